"""A classic HFTP server (no `help`, no `raw`) written as a student would,
for the tests of `hftp grade`: correct in mode `good`, and misbehaving in
the others. The mode is the first line of `mode.txt` beside this file, so
that each submission of the test class is this script plus its mode.

usage: server.py -d DIR -p PORT
modes:
  good       correct (threads, one per connection)
  unsorted   lists the files in reverse order (a plain bug)
  nostart    dies at start-up with a traceback
  wrongport  ignores -p and listens on the port in `port.txt`
  forkbomb   serves one client at a time, after forking a fork bomb at
             start-up
  diskfill   serves, while a thread fills every place it may write
  hang       answers `quit`, and nothing else ever
  spy        prints what it can see and do from its sandbox, and exits
             (`spy.txt`: a port the test listens on outside, the class
             directory)
"""
import base64
import errno
import os
import socket
import stat
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "mode.txt")) as f:
    MODE = f.read().split()[0]

MAX_LINE = 8 * 1024 * 1024
NAME_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
COMMANDS = {b"get_file_listing": 0, b"get_metadata": 1, b"get_slice": 3, b"quit": 0}
STATUS = {
    0: b"0 OK",
    100: b"100 BAD EOL",
    101: b"101 BAD REQUEST",
    199: b"199 INTERNAL SERVER ERROR",
    200: b"200 NO SUCH COMMAND",
    201: b"201 INVALID ARGUMENTS FOR COMMAND",
    202: b"202 FILE NOT FOUND",
    203: b"203 OFFSET EXCEEDS FILE SIZE",
}


class Fatal(Exception):
    """A fatal status: sent, then the connection ends."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


class Quit(Exception):
    """`quit`: `0 OK`, then the connection ends."""


def arguments():
    directory, port = None, 19500
    args = sys.argv[1:]
    for flag, value in zip(args[::2], args[1::2]):
        if flag == "-d":
            directory = value
        elif flag == "-p":
            port = int(value)
    if directory is None or not os.path.isdir(directory):
        sys.exit("server.py: -d DIR must name a directory")
    return directory, port


DIRECTORY, PORT = arguments()


def valid_name(name):
    return len(name) > 0 and all(b in NAME_CHARS for b in name) and name not in (b".", b"..")


def regular(name):
    """The path of a regular file directly inside DIRECTORY, or None."""
    if len(name) > 255:
        return None
    path = os.path.join(DIRECTORY.encode(), name)
    try:
        real = os.path.realpath(path)
        if os.path.dirname(real) != os.path.realpath(DIRECTORY.encode()):
            return None
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
    except OSError:
        return None
    return path


def listing():
    try:
        names = [n for n in os.listdir(DIRECTORY.encode()) if valid_name(n) and regular(n)]
    except OSError:
        raise Fatal(199)
    names.sort(reverse=(MODE == "unsorted"))
    return b"".join(n + b"\r\n" for n in names) + b"\r\n"


def answer(tokens):
    command, args = tokens[0], tokens[1:]
    if MODE == "hang" and command != b"quit":
        threading.Event().wait()
    if command not in COMMANDS:
        return STATUS[200] + b"\r\n"
    if len(args) != COMMANDS[command]:
        return STATUS[201] + b"\r\n"
    if any(not a for a in args):
        return STATUS[201] + b"\r\n"
    if command == b"quit":
        raise Quit()
    if command == b"get_file_listing":
        return b"0 OK\r\n" + listing()
    name = args[0]
    if not valid_name(name):
        return STATUS[201] + b"\r\n"
    numbers = args[1:]
    if any(not n.isdigit() for n in numbers):
        return STATUS[201] + b"\r\n"
    path = regular(name)
    if path is None:
        return STATUS[202] + b"\r\n"
    size = os.stat(path).st_size
    if command == b"get_metadata":
        try:
            with open(path, "rb"):
                pass
        except OSError:
            raise Fatal(199)
        return b"0 OK\r\n" + str(size).encode() + b"\r\n"
    offset, length = int(numbers[0]), int(numbers[1])
    if offset + length > size:
        return STATUS[203] + b"\r\n"
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except OSError:
        raise Fatal(199)
    return b"0 OK\r\n" + base64.b64encode(data) + b"\r\n"


def finish(conn, last):
    """Sends the last answer, shuts down writing, drains, closes."""
    try:
        conn.sendall(last)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(0.5)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and conn.recv(65536):
            pass
    except OSError:
        pass


def serve(conn):
    line = bytearray()
    pending_cr = False
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            for b in chunk:
                if pending_cr:
                    pending_cr = False
                    if b != 10:
                        raise Fatal(100)
                    text = bytes(line)
                    line.clear()
                    if not text.strip(b" "):
                        raise Fatal(101)
                    try:
                        conn.sendall(answer(text.split(b" ")))
                    except Quit:
                        finish(conn, b"0 OK\r\n")
                        return
                    continue
                if b == 13:
                    pending_cr = True
                elif b == 10:
                    raise Fatal(100)
                elif b < 32 or b > 126:
                    raise Fatal(101)
                else:
                    line.append(b)
                    if len(line) > MAX_LINE:
                        raise Fatal(101)
    except Fatal as fatal:
        finish(conn, STATUS[fatal.code] + b"\r\n")
    except OSError:
        pass
    finally:
        conn.close()


def bomb():
    """Forks without end; at the limit, waits a little and tries again
    (so that the bomb holds the limit without spinning the CPU)."""
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.2)


def fill():
    """Writes everywhere it may until the disk refuses, then stops."""
    chunk = b"x" * (1 << 20)
    for place in ("/tmp", "/var/tmp", "/dev/shm", HERE, os.getcwd(), DIRECTORY):
        try:
            with open(os.path.join(place, "hftp-grade-filler.bin"), "wb") as f:
                while True:
                    f.write(chunk)
                    f.flush()
        except OSError as e:
            print(f"filler: {place}: {e}", flush=True)


def spy():
    """One line of facts about the sandbox, for the test to read."""
    with open(os.path.join(HERE, "spy.txt")) as f:
        host_port, class_dir = f.read().splitlines()[:2]
    facts = [f"uid={os.getuid()}"]
    facts.append("secret=" + os.environ.get("HFTP_GRADE_SECRET", "none"))
    for name, path in (("etc", "/etc/hftp-grade-spy"), ("usr", "/usr/hftp-grade-spy")):
        try:
            open(path, "w").close()
            facts.append(f"{name}=written")
        except OSError as e:
            facts.append(f"{name}={errno.errorcode.get(e.errno, e.errno)}")
    for name, path in (("home", "/home"), ("class", class_dir)):
        if os.path.isdir(path):
            facts.append(f"{name}=" + ("+".join(sorted(os.listdir(path))) or "empty"))
        else:
            facts.append(f"{name}=missing")
    facts.append("ifaces=" + "+".join(sorted(n for _, n in socket.if_nameindex())))
    try:
        socket.create_connection(("127.0.0.1", int(host_port)), timeout=2).close()
        facts.append("host=connected")
    except OSError as e:
        facts.append(f"host={errno.errorcode.get(e.errno, e.errno)}")
    print("spy: " + " ".join(facts), flush=True)
    sys.exit(3)


def main():
    if MODE == "spy":
        spy()
    if MODE == "nostart":
        import servidor_de_la_catedra  # noqa: F401  (no such module)
    port = PORT
    if MODE == "wrongport":
        with open(os.path.join(HERE, "port.txt")) as f:
            port = int(f.read())
    if MODE == "forkbomb" and os.fork() == 0:
        bomb()
    if MODE == "diskfill":
        threading.Thread(target=fill, daemon=True).start()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print(f"listening on {port}", flush=True)
    while True:
        conn, _ = listener.accept()
        if MODE == "forkbomb":
            serve(conn)  # one client at a time: no thread to start
        else:
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
