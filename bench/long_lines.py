"""Long lines: what one huge line inside DATA costs the SMTP engine (and a real server).

A message whose body is a single line of 20, 40 or 60 MB (under the default 64 MiB size
limit, so it is read to its end and then refused with 550 5.6.0) is fed to
``smtp.ServerConnection`` in 64 KiB pieces, as a socket would deliver it, and the CPU
time the engine spent is printed per size. The cost should grow linearly with the size:
the engine keeps only the length of the line it has not seen the end of.

With ``--server`` the same messages also go to a real ``hato serve`` (a fresh data
directory, a loopback port) over a plain socket, and the time from the first octet of
the message to the server's reply is printed, with the server's CPU time.

    .venv/bin/python bench/long_lines.py
    .venv/bin/python bench/long_lines.py --sizes 20,40,60 --server
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

from accept import start_hato
from procstat import cpu_seconds

from hato.smtp import CLOSED as ENGINE_CLOSED
from hato.smtp import NEED_DATA, DataCommand, Hello, MailFrom, MessageEnd, RcptTo, reply
from hato.smtp import ServerConnection as Engine

HATO = Path(sys.executable).with_name("hato")
PIECE = 64 * 1024
MB = 1_000_000
ENVELOPE = (
    b"EHLO bench.example\r\nMAIL FROM:<a@bench.example>\r\nRCPT TO:<postmaster@localhost>\r\n"
)


def one_line_message(megabytes: int) -> bytes:
    return b"Subject: long\r\n\r\n" + b"x" * (megabytes * MB) + b"\r\n.\r\n"


def _answer(event: object) -> object:
    match event:
        case Hello() | MailFrom() | RcptTo():
            return reply(250, None, "Ok")
        case DataCommand():
            return reply(354, None, "Go ahead")
        case MessageEnd(problem=problem):
            return problem or reply(250, None, "Ok")
    return None


def engine_seconds(message: bytes) -> tuple[float, str]:
    """CPU seconds the engine took for one message, and its last reply line."""
    conn = Engine("bench.example")
    started = time.process_time()
    view = memoryview(ENVELOPE + b"DATA\r\n" + message)
    for start in range(0, len(view), PIECE):
        conn.receive_data(bytes(view[start : start + PIECE]))
        while (event := conn.next_event()) is not NEED_DATA and event is not ENGINE_CLOSED:
            answer = _answer(event)
            if answer is not None:
                conn.send_reply(answer)  # type: ignore[arg-type]
    elapsed = time.process_time() - started
    last = conn.data_to_send().decode().rstrip("\r\n").rpartition("\r\n")[2]
    return elapsed, last


def _read_reply(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\r\n") or data.rsplit(b"\r\n", 2)[-2][3:4] == b"-":
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed")
        data += chunk
    return data.decode().rstrip("\r\n").rpartition("\r\n")[2]


def server_seconds(port: int, message: bytes) -> tuple[float, str]:
    """Wall-clock seconds from the first message octet to the server's reply."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        _read_reply(sock)
        for line in [*ENVELOPE.split(b"\r\n")[:-1], b"DATA"]:
            sock.sendall(line + b"\r\n")
            _read_reply(sock)
        started = time.monotonic()
        sock.sendall(message)
        last = _read_reply(sock)
        elapsed = time.monotonic() - started
        sock.sendall(b"QUIT\r\n")
    return elapsed, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20,40,60", help="line lengths in MB (10^6 octets)")
    parser.add_argument("--server", action="store_true", help="also time a real hato serve")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"engine, {PIECE // 1024} KiB pieces:")
    for size in sizes:
        seconds, last = engine_seconds(one_line_message(size))
        print(f"  {size:3d} MB line: {seconds:7.2f} s CPU  ({last})")
    if not args.server:
        return
    with tempfile.TemporaryDirectory(prefix="hato-bench-", dir=Path.cwd()) as tmp:
        proc, port = start_hato(Path(tmp))
        try:
            print("hato serve, one socket:")
            for size in sizes:
                before = cpu_seconds(proc.pid)
                seconds, last = server_seconds(port, one_line_message(size))
                cpu = cpu_seconds(proc.pid) - before
                timing = f"{seconds:7.2f} s to the reply, {cpu:6.2f} s CPU"
                print(f"  {size:3d} MB line: {timing}  ({last})")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
