#!/usr/bin/env python3
"""A typical HFTP server, written the way the networking course asks for it.

This is the "typical implementation" baseline of BENCHMARKS.md: one thread
per connection, a receive buffer split on CRLF, and each slice read whole
into memory and encoded with base64.b64encode before it is sent. It speaks
the classic revision (get_file_listing, get_metadata, get_slice, quit) plus
`help` and `raw`, and follows the spec's error rules, so `hftp check` and
`hftp bench` can run against it. It is deliberately idiomatic rather than
tuned: that is the point of a baseline.

    python3 bench/baselines/hftp_server.py -d DIR -p 19500 -a 127.0.0.1
"""

import argparse
import base64
import os
import socket
import sys
import threading

EOL = "\r\n"
BUFSIZE = 4096
MAX_LINE = 8 * 1024 * 1024

CODE_OK = 0
BAD_EOL = 100
BAD_REQUEST = 101
INTERNAL_ERROR = 199
INVALID_COMMAND = 200
INVALID_ARGUMENTS = 201
FILE_NOT_FOUND = 202
BAD_OFFSET = 203

MESSAGES = {
    CODE_OK: "OK",
    BAD_EOL: "BAD EOL",
    BAD_REQUEST: "BAD REQUEST",
    INTERNAL_ERROR: "INTERNAL SERVER ERROR",
    INVALID_COMMAND: "NO SUCH COMMAND",
    INVALID_ARGUMENTS: "INVALID ARGUMENTS FOR COMMAND",
    FILE_NOT_FOUND: "FILE NOT FOUND",
    BAD_OFFSET: "OFFSET EXCEEDS FILE SIZE",
}

VALID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
COMMANDS = ["get_file_listing", "get_metadata", "get_slice", "help", "quit"]


def fatal_status(code):
    return code // 100 == 1


class Connection:
    """One client, served by its own thread."""

    def __init__(self, sock, directory):
        self.socket = sock
        self.directory = directory
        self.buffer = b""
        self.connected = True

    def send(self, message):
        if isinstance(message, str):
            message = message.encode("ascii")
        self.socket.sendall(message)

    def status(self, code):
        self.send(f"{code} {MESSAGES[code]}{EOL}")
        if fatal_status(code):
            self.connected = False

    def read_line(self):
        """The next request line without its CRLF, an int error code, or None on EOF."""
        while True:
            cr = self.buffer.find(b"\r")
            lf = self.buffer.find(b"\n")
            if lf != -1 and (cr == -1 or lf < cr or lf != cr + 1):
                return BAD_EOL
            if cr != -1 and cr + 1 < len(self.buffer) and self.buffer[cr + 1] != ord("\n"):
                return BAD_EOL
            if cr != -1 and lf == cr + 1:
                line, self.buffer = self.buffer[:cr], self.buffer[cr + 2:]
                try:
                    text = line.decode("ascii")
                except UnicodeDecodeError:
                    return BAD_REQUEST
                if not text.strip(" ") or not all(" " <= c <= "~" for c in text):
                    return BAD_REQUEST
                return text
            if len(self.buffer) > MAX_LINE:
                return BAD_REQUEST
            data = self.socket.recv(BUFSIZE)
            if not data:
                return None
            self.buffer += data

    def path_of(self, name):
        """The path of a servable file, or an error code."""
        if not name or name in (".", "..") or not set(name) <= VALID_CHARS:
            return INVALID_ARGUMENTS
        path = os.path.join(self.directory, name)
        if len(name) > 255 or not os.path.isfile(path):
            return FILE_NOT_FOUND
        real = os.path.realpath(path)
        if os.path.dirname(real) != os.path.realpath(self.directory):
            return FILE_NOT_FOUND
        return path

    def get_file_listing(self):
        try:
            names = sorted(
                n for n in os.listdir(self.directory)
                if set(n) <= VALID_CHARS and not isinstance(self.path_of(n), int)
            )
        except OSError:
            return self.status(INTERNAL_ERROR)
        self.send("0 OK" + EOL + "".join(n + EOL for n in names) + EOL)

    def get_metadata(self, name):
        path = self.path_of(name)
        if isinstance(path, int):
            return self.status(path)
        try:
            size = os.path.getsize(path)
        except OSError:
            return self.status(INTERNAL_ERROR)
        self.send("0 OK" + EOL + str(size) + EOL)

    def get_slice(self, name, offset, size, mode=None):
        if mode not in (None, "raw"):
            return self.status(INVALID_ARGUMENTS)
        if not name or name in (".", "..") or not set(name) <= VALID_CHARS:
            return self.status(INVALID_ARGUMENTS)
        if not (offset.isdigit() and size.isdigit() and offset.isascii() and size.isascii()):
            return self.status(INVALID_ARGUMENTS)
        path = self.path_of(name)
        if isinstance(path, int):
            return self.status(path)
        offset, size = int(offset), int(size)
        try:
            if offset + size > os.path.getsize(path):
                return self.status(BAD_OFFSET)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(size)
        except OSError:
            return self.status(INTERNAL_ERROR)
        if mode == "raw":
            self.send(b"0 OK\r\nContent-Length: %d\r\n\r\n" % size + data)
        else:
            self.send(b"0 OK\r\n" + base64.b64encode(data) + b"\r\n")

    def help(self):
        self.send("0 OK" + EOL + "".join(c + EOL for c in COMMANDS) + EOL)

    def quit(self):
        self.status(CODE_OK)
        self.connected = False

    def dispatch(self, line):
        words = line.split(" ")
        command, args = words[0], words[1:]
        handlers = {
            "get_file_listing": (self.get_file_listing, (0,)),
            "get_metadata": (self.get_metadata, (1,)),
            "get_slice": (self.get_slice, (3, 4)),
            "help": (self.help, (0,)),
            "quit": (self.quit, (0,)),
        }
        if command not in handlers:
            return self.status(INVALID_COMMAND)
        handler, counts = handlers[command]
        if len(args) not in counts or any(a == "" for a in args):
            return self.status(INVALID_ARGUMENTS)
        handler(*args)

    def handle(self):
        try:
            while self.connected:
                line = self.read_line()
                if line is None:
                    break
                if isinstance(line, int):
                    self.status(line)
                    break
                self.dispatch(line)
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            try:
                # Let the last answer reach the client before closing.
                self.socket.shutdown(socket.SHUT_WR)
                self.socket.settimeout(0.5)
                while self.socket.recv(BUFSIZE):
                    pass
            except OSError:
                pass
            self.socket.close()


def main():
    parser = argparse.ArgumentParser(description="Typical HFTP server (thread per connection)")
    parser.add_argument("-d", "--directory", default="testdata")
    parser.add_argument("-p", "--port", type=int, default=19500)
    parser.add_argument("-a", "--address", default="0.0.0.0")
    options = parser.parse_args()
    if not os.path.isdir(options.directory):
        sys.exit(f"no such directory: {options.directory}")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((options.address, options.port))
    server.listen(1024)
    host, port = server.getsockname()
    print(f"listening on {host}:{port} (python baseline)", flush=True)
    while True:
        sock, _ = server.accept()
        conn = Connection(sock, options.directory)
        threading.Thread(target=conn.handle, daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
