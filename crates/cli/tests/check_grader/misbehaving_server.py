"""Misbehaving HFTP servers for the tests of `hftp check` (check_grader.rs).

usage: server.py MODE PORT DIR PIDFILE
MODE: silent | pool-wedge | wedge | crash-long | quit-prefix
Prints `listening on 127.0.0.1:PORT` once it listens; appends its pid, its
process group and the pid of a helper child (`sleep`) to PIDFILE.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

mode, port, directory, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
# A helper process in the same process group, as a real server might start:
# stopping the server must stop it too.
helper = subprocess.Popen(["sleep", "300"])
with open(pidfile, "a") as f:
    f.write(f"{os.getpid()} {os.getpgid(0)} {helper.pid}\n")

wedged = threading.Event()
never = threading.Event()  # never set: waiting on it blocks for ever


def lines(conn):
    """Yields request lines (without their line end) and whether the line
    ended with a bare LF."""
    buf = b""
    while True:
        if mode == "crash-long" and len(buf) > 4096:
            sys.stderr.write(f"server.py: line of {len(buf)} bytes \x00\x1b[31m<&>]]> overflows my buffer\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)
        i = buf.find(b"\n")
        if i < 0:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            continue
        line, buf = buf[:i], buf[i + 1:]
        bare = not line.endswith(b"\r")
        yield line.rstrip(b"\r"), bare


def handle(conn):
    with conn:
        if mode == "silent":
            while conn.recv(65536):
                pass
            return
        for line, bare in lines(conn):
            if mode == "wedge" and (bare or wedged.is_set()):
                # A bare LF sends this server into an endless loop: every
                # worker, now and later, stops answering.
                wedged.set()
                never.wait()
            if mode == "pool-wedge" and bare:
                # This worker loops for ever; the others still answer.
                never.wait()
            if line == b"quit" or (mode == "quit-prefix" and line.startswith(b"quit")):
                conn.sendall(b"0 OK\r\n")
                return
            conn.sendall(b"200 NO SUCH COMMAND\r\n")


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
pool = ThreadPoolExecutor(max_workers=2) if mode == "pool-wedge" else None
while True:
    conn, _ = listener.accept()
    if pool:
        pool.submit(handle, conn)
    else:
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
