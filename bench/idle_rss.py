#!/usr/bin/env python3
"""Resident memory of `hftp serve` holding N idle connections, per model.

Usage: bench/idle_rss.py [HFTP_BINARY] [N] [MODELS]   (default target/release/hftp, 1000)

With HFTP_BENCH_TLS=1 the server serves TLS (`--tls-cert`, a certificate
made with openssl for the run) and every connection completes its TLS
handshake before it idles: the memory of N idle TLS connections.

Starts the server on a loopback port for each model, opens N connections
that send nothing, waits until the server holds them all (its descriptor
count, or for fork its number of children), and reports the resident set (for fork:
the proportional set size of the parent plus every child). Then checks each connection still answers
`quit` with `0 OK`. Loopback only; bounded in count and time.
"""
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/hftp"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
MODELS = ["async", "threads", "pool", "fork", "poll"]
TLS = os.environ.get("HFTP_BENCH_TLS") == "1"


def make_certificate(where):
    """A self-signed certificate for 127.0.0.1 (TLS runs only)."""
    cert, key = os.path.join(where, "cert.pem"), os.path.join(where, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


def connect(port, context):
    """One connection; under TLS, with its handshake done."""
    plain = socket.create_connection(("127.0.0.1", port))
    if context is None:
        return plain
    return context.wrap_socket(plain, server_hostname="127.0.0.1")


def rss_kib(pid, field="Rss:"):
    """Resident KiB of a process; field "Pss:" shares shared pages out."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def wait_until(cond, what, limit=60):
    deadline = time.time() + limit
    while not cond():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def measure(model, served, tls=None):
    args = [BIN, "serve", "-d", served, "-p", "0", "-a", "127.0.0.1", "-m", model, "-q"]
    context = None
    if tls:
        args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        context = ssl.create_default_context(cafile=tls[0])
    server = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while "listening on" not in line:
            line = server.stdout.readline()
            if not line:
                raise SystemExit(f"{model}: server did not start")
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        base = rss_kib(server.pid)
        start = time.time()
        conns = [connect(port, context) for _ in range(N)]
        if model == "fork":
            wait_until(lambda: len(children(server.pid)) >= N, "children")
        else:
            wait_until(lambda: len(os.listdir(f"/proc/{server.pid}/fd")) >= N, "accepts")
        held = time.time() - start
        time.sleep(0.5)  # let lazily touched pages settle before reading RSS
        rss = rss_kib(server.pid)
        if model == "fork":
            # Children share the parent's pages: count each page once
            # (proportional set size), not once per child.
            rss = rss_kib(server.pid, "Pss:") + sum(rss_kib(c, "Pss:") for c in children(server.pid))
        ok = 0
        for c in conns:
            c.settimeout(10)
            c.sendall(b"quit\r\n")
            if c.recv(16) == b"0 OK\r\n":
                ok += 1
            c.close()
        return base, rss, held, ok
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    served = tempfile.mkdtemp()
    with open(os.path.join(served, "a.txt"), "w") as f:
        f.write("hello")
    tls = make_certificate(tempfile.mkdtemp()) if TLS else None
    kind = "idle TLS connections" if TLS else "idle connections"
    print(f"| model | {kind} | RSS before | RSS holding them | per connection | answered quit |")
    print("|---|---|---|---|---|---|")
    for model in (sys.argv[3].split(",") if len(sys.argv) > 3 else MODELS):
        base, rss, _held, ok = measure(model, served, tls)
        per = (rss - base) / N
        print(f"| {model} | {N} | {base/1024:.1f} MiB | {rss/1024:.1f} MiB | {per:.1f} KiB | {ok}/{N} |", flush=True)


if __name__ == "__main__":
    main()
