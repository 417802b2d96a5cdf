"""A classic HFTP server written as a student would, correct but for one
bug chosen by MODE, for the tests of `hftp check`'s diagnosis.

usage: student_server.py MODE DIR PORT
MODE: ok | unsorted | existence-first | extra-after-203 | pool-dies-on-reset
      | drip
"""
import base64
import os
import socket
import stat
import sys
import threading
import time

MODE, DIRECTORY, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
MAX_LINE = 8 * 1024 * 1024
NAME_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
COMMANDS = {"get_file_listing": 0, "get_metadata": 1, "get_slice": 3, "quit": 0}


class Fatal(Exception):
    """A fatal status: sent, then the connection ends."""


def valid_name(name):
    return (
        len(name) > 0
        and all(b in NAME_CHARS for b in name)
        and name not in (b".", b"..")
    )


def regular(name):
    """The size of a regular file directly inside DIRECTORY, or None."""
    if len(name) > 255:
        return None
    path = os.path.join(DIRECTORY, name.decode())
    real = os.path.realpath(path)
    if os.path.dirname(real) != os.path.realpath(DIRECTORY):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def listing():
    names = []
    for entry in os.listdir(DIRECTORY):
        raw = entry.encode("utf-8", "surrogateescape")
        if valid_name(raw) and regular(raw) is not None:
            names.append(raw)
    names.sort(reverse=(MODE == "unsorted"))
    return b"0 OK\r\n" + b"".join(n + b"\r\n" for n in names) + b"\r\n"


def answer(line):
    """The answer to one request line (CR LF removed)."""
    if not line.strip(b" "):
        raise Fatal(b"101 BAD REQUEST\r\n")
    tokens = line.split(b" ")
    command = tokens[0].decode("ascii")
    if command not in COMMANDS:
        return b"200 NO SUCH COMMAND\r\n"
    args = tokens[1:]
    # The bug of existence-first: existence before the shape of the arguments.
    if (
        command == "get_slice"
        and MODE == "existence-first"
        and args
        and valid_name(args[0])
        and regular(args[0]) is None
    ):
        return b"202 FILE NOT FOUND\r\n"
    want = COMMANDS[command]
    if len(args) != want or any(a == b"" for a in args):
        return b"201 INVALID ARGUMENTS FOR COMMAND\r\n"
    if command == "quit":
        return b"0 OK\r\n"
    if command == "get_file_listing":
        return listing()
    name = args[0]
    if not valid_name(name):
        return b"201 INVALID ARGUMENTS FOR COMMAND\r\n"
    if command == "get_slice" and not all(a.isdigit() for a in args[1:]):
        return b"201 INVALID ARGUMENTS FOR COMMAND\r\n"
    size = regular(name)
    if size is None:
        return b"202 FILE NOT FOUND\r\n"
    if command == "get_metadata":
        return b"0 OK\r\n%d\r\n" % size
    offset, length = int(args[1]), int(args[2])
    if offset + length > size:
        tail = b"0 OK\r\n" if MODE == "extra-after-203" else b""
        return b"203 OFFSET EXCEEDS FILE SIZE\r\n" + tail
    try:
        with open(os.path.join(DIRECTORY, name.decode()), "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except OSError:
        raise Fatal(b"199 INTERNAL SERVER ERROR\r\n") from None
    return b"0 OK\r\n" + base64.b64encode(data) + b"\r\n"


def send(conn, data):
    if MODE == "drip":
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(0.2)
    else:
        conn.sendall(data)


def close_after_fatal(conn):
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(0.5)
    end = time.monotonic() + 1
    try:
        while time.monotonic() < end and conn.recv(65536):
            pass
    except OSError:
        pass


class QuitWith(Exception):
    """`quit` was answered (its answer in args[0]): the connection ends."""


def serve(conn):
    """Answers one client; scans lines byte by byte for the fatal rules."""
    line = bytearray()
    cr = False
    while True:
        data = conn.recv(65536)
        if not data:
            return
        for byte in data:
            try:
                if cr:
                    cr = False
                    if byte != 0x0A:
                        raise Fatal(b"100 BAD EOL\r\n")
                    request = bytes(line)
                    line.clear()
                    reply = answer(request)
                    if request == b"quit":
                        raise QuitWith(reply)
                    send(conn, reply)
                elif byte == 0x0D:
                    cr = True
                elif byte == 0x0A:
                    raise Fatal(b"100 BAD EOL\r\n")
                elif byte < 0x20 or byte > 0x7E:
                    raise Fatal(b"101 BAD REQUEST\r\n")
                else:
                    line.append(byte)
                    if len(line) > MAX_LINE:
                        raise Fatal(b"101 BAD REQUEST\r\n")
            except Fatal as fatal:
                send(conn, fatal.args[0])
                close_after_fatal(conn)
                return


def serve_client(conn):
    with conn:
        try:
            serve(conn)
        except QuitWith as quit_reply:
            try:
                send(conn, quit_reply.args[0])
                close_after_fatal(conn)
            except OSError:
                pass
        except OSError:
            if MODE == "pool-dies-on-reset":
                raise


def worker(jobs):
    while True:
        conn = jobs.get()
        serve_client(conn)


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", PORT))
listener.listen(128)
print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
if MODE == "pool-dies-on-reset":
    import queue

    jobs = queue.Queue()
    # Four workers; one that meets a reset dies, and is never replaced.
    for _ in range(4):
        threading.Thread(target=worker, args=(jobs,), daemon=True).start()
    while True:
        conn, _ = listener.accept()
        jobs.put(conn)
else:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_client, args=(conn,), daemon=True).start()
