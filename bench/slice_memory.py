#!/usr/bin/env python3
"""Peak resident memory of `hftp serve` while one client fetches a 1 GiB
slice (base64, then raw) and another sends a 100 MiB line with no CRLF.

Usage: bench/slice_memory.py [HFTP_BINARY] [MODEL]   (default target/release/hftp, async)

The served file is sparse (no disk space needed). Loopback only; bounded.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/hftp"
MODEL = sys.argv[2] if len(sys.argv) > 2 else "async"
GIB = 1 << 30


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def main():
    served = tempfile.mkdtemp()
    with open(os.path.join(served, "big.bin"), "wb") as f:
        f.truncate(2 * GIB)
    server = subprocess.Popen([BIN, "serve", "-d", served, "-p", "0", "-a", "127.0.0.1", "-m", MODEL, "-q"],
                              stdout=subprocess.PIPE, text=True)
    line = ""
    while "listening on" not in line:
        line = server.stdout.readline()
    port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
    time.sleep(0.2)
    base = status(server.pid, "VmRSS:")
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], status(server.pid, "VmRSS:"))
            time.sleep(0.01)

    def long_line():
        s = socket.create_connection(("127.0.0.1", port))
        chunk = b"x" * (1 << 20)
        s.sendall(b"get_metadata ")
        try:
            for _ in range(100):
                s.sendall(chunk)
        except OSError:
            pass  # over the 8 MiB line limit: answered 101 and closed
        s.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    liner = threading.Thread(target=long_line)
    liner.start()
    results = []
    for mode in ("", " raw"):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"get_slice big.bin 0 {GIB}{mode}\r\n".encode())
        total, start = 0, time.time()
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            total += len(b)
            expected = GIB * 4 // 3 + 8 if not mode else GIB + 30
            if total >= expected - 64:
                break
        results.append((mode.strip() or "base64", total, time.time() - start))
        s.close()
    liner.join()
    done.set()
    sampler.join()
    server.terminate()
    server.wait()
    hwm = peak[0]
    print(f"model {MODEL}: RSS before {base/1024:.1f} MiB, peak while serving {hwm/1024:.1f} MiB, growth {(hwm-base)/1024:.1f} MiB")
    for mode, total, secs in results:
        print(f"  1 GiB {mode} slice: {total/secs/1e6:.0f} MB/s on the wire")


if __name__ == "__main__":
    main()
