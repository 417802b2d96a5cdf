#!/usr/bin/env python3
"""Resident memory of `hftp serve` before, at the peak of, and after a burst
of streaming connections, per model: does the memory come back?

Usage: bench/burst_rss.py [HFTP_BINARY] [N] [MODELS]
       (default target/release/hftp, 1024, async,threads,pool,poll;
       SLICE_MIB=4 sets the slice size)

For each model: starts the server on a loopback port serving one 4 MiB
file, measures the idle resident set, then opens N connections at once;
each asks for the whole file as a base64 slice and reads it through a
small receive buffer, so that the N answers stream together. When every answer is in and
every connection closed, waits until the server's descriptor count is back
to its idle value and its RSS stops falling (bounded), and reports idle,
peak and after. fork is left out by default: its connections live in
child processes whose memory goes away with them. Loopback only; bounded
in count and time.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/hftp"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
MODELS = (sys.argv[3] if len(sys.argv) > 3 else "async,threads,pool,poll").split(",")
FILE_SIZE = int(os.environ.get("SLICE_MIB", "4")) << 20
ANSWER = len(b"0 OK\r\n") + 4 * ((FILE_SIZE + 2) // 3) + 2


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def client(port, started, go, errors):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=120)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        started.release()
        go.wait(120)
        s.sendall(f"get_slice big.bin 0 {FILE_SIZE}\r\n".encode())
        got = 0
        while got < ANSWER:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        s.close()
        if got != ANSWER:
            errors.append(f"short answer {got}/{ANSWER}")
    except OSError as e:
        errors.append(str(e))
        started.release()


def measure(model, served):
    args = [BIN, "serve", "-d", served, "-p", "0", "-a", "127.0.0.1", "-m", model, "-q"]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while "listening on" not in line:
            line = server.stdout.readline()
            if not line:
                raise SystemExit(f"{model}: server did not start")
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        time.sleep(0.5)  # let start-up allocations settle before the baseline
        idle_rss, idle_fds = rss_kib(server.pid), fds(server.pid)
        started, go, errors = threading.Semaphore(0), threading.Event(), []
        threads = [threading.Thread(target=client, args=(port, started, go, errors)) for _ in range(N)]
        for t in threads:
            t.start()
        for _ in threads:
            started.acquire(timeout=120)
        go.set()
        peak = idle_rss
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_kib(server.pid))
            time.sleep(0.02)
        deadline = time.time() + 30
        while fds(server.pid) > idle_fds and time.time() < deadline:
            time.sleep(0.05)
        after, deadline = rss_kib(server.pid), time.time() + 5
        while time.time() < deadline:  # until it stops falling, at most 5 s
            time.sleep(0.5)
            now = rss_kib(server.pid)
            if now >= after:
                break
            after = now
        if errors:
            print(f"{model}: {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
        return idle_rss, peak, after, len(errors)
    finally:
        server.terminate()
        server.wait(30)


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * N + 64)), hard))
    with tempfile.TemporaryDirectory() as served:
        with open(os.path.join(served, "big.bin"), "wb") as f:
            f.write(os.urandom(FILE_SIZE))
        print(f"{BIN}: {N} connections streaming a {FILE_SIZE >> 20} MiB base64 slice")
        print(f"{'model':8} {'idle MiB':>9} {'peak MiB':>9} {'after MiB':>10} {'errors':>7}")
        for model in MODELS:
            idle, peak, after, errors = measure(model, served)
            print(f"{model:8} {idle / 1024:9.1f} {peak / 1024:9.1f} {after / 1024:10.1f} {errors:7}")


if __name__ == "__main__":
    main()
