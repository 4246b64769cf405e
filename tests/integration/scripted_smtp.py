"""A scripted SMTP server for tests: a next hop whose answers the test decides.

It listens on one loopback address and port, in background threads, and speaks just
enough SMTP for a relay to deliver to it (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT).
It advertises 8BITMIME and ENHANCEDSTATUSCODES, PIPELINING unless built with
``pipelining=False`` (the client then goes lock-step), and DSN unless built with
``dsn=False``, so a client can tell whether it may pass NOTIFY, ORCPT and ENVID on.

What it answers:

- RCPT: the next reply scripted for that recipient (``replies={"x@d.test": ["451 4.3.0
  Try again later", "250 2.1.5 Ok"]}``: one reply per RCPT for that address, in order,
  the last one repeating); ``250 2.1.5 Ok`` for a recipient with no script.
- DATA: ``554 5.5.1`` when no recipient was accepted, else 354; the message, read to its
  final dot, gets ``250 2.0.0 Ok``.
- Everything else: what a plain server would answer.

What it records: every transaction begun with MAIL (``transactions``), with the command
lines exactly as received and, once DATA ended, the message bytes dot-unstuffed; the
number of connections (``connections``). With ``lenient_line_ends=True`` it takes a bare LF
for a line end in DATA too (as many servers do), so ``\n.\n`` ends the data there: the
next hop a smuggling attack needs. With ``hold_after=N`` the connections after the
first N wait before their greeting until ``release()``, so a test can look at the sender
while it waits for the next attempt, without racing its retry timer.

Use it as a context manager, or ``start()`` and ``stop()`` it::

    with ScriptedSmtp("127.0.0.5", port, replies={"nobody@d.test": [REFUSED]}) as next_hop:
        ...
        assert next_hop.transactions[0].recipients == ["RCPT TO:<nobody@d.test>"]
"""

from __future__ import annotations

import socket
import socketserver
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from io import BufferedIOBase

ACCEPTED = "250 2.1.5 Ok"
# How long one connection may sit silent, or wait held, before the server gives up on it.
IDLE_TIMEOUT = 30.0
# Longest line read: far beyond what RFC 5321 allows, so only a broken client reaches it.
MAX_LINE = 65536


@dataclass(slots=True)
class Transaction:
    """One mail transaction as the server saw it."""

    connection: int  # 1 for the first connection the server accepted
    helo: str  # the EHLO or HELO line that opened the session
    mail: str  # the MAIL command line, parameters included
    recipients: list[str] = field(default_factory=list)  # every RCPT line, as sent
    accepted: list[str] = field(default_factory=list)  # addresses whose RCPT got a 2xx
    data: bytes | None = None  # the message, once its final dot arrived


class ScriptedSmtp:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        replies: Mapping[str, Sequence[str]] | None = None,
        dsn: bool = True,
        pipelining: bool = True,
        hostname: str = "scripted.test",
        hold_after: int | None = None,
        lenient_line_ends: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.hostname = hostname
        self.dsn = dsn
        self.pipelining = pipelining
        self.hold_after = hold_after
        self.lenient_line_ends = lenient_line_ends
        self.transactions: list[Transaction] = []
        self.connections = 0
        # Tracebacks of the server's own failures: a bug here, not in the client.
        self.errors: list[str] = []
        self._replies = {
            address.lower(): list(script) for address, script in (replies or {}).items()
        }
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server: _Server | None = None

    # -- the script -----------------------------------------------------------------------

    def rcpt_reply(self, address: str) -> str:
        with self._lock:
            script = self._replies.get(address.lower())
            if not script:
                return ACCEPTED
            return script.pop(0) if len(script) > 1 else script[0]

    def release(self) -> None:
        """Let held connections (``hold_after``) go on to their greeting."""
        self._released.set()

    def delivered(self) -> list[Transaction]:
        """The transactions whose message was taken (their final dot got 250)."""
        with self._lock:
            return [t for t in self.transactions if t.data is not None]

    def ehlo_lines(self) -> list[str]:
        keywords = ["8BITMIME", "ENHANCEDSTATUSCODES"]
        if self.pipelining:
            keywords.append("PIPELINING")
        if self.dsn:
            keywords.append("DSN")
        return [self.hostname, *keywords]

    # -- the socket -----------------------------------------------------------------------

    def start(self) -> None:
        self._server = _Server((self.host, self.port), self)
        thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"smtp-{self.port}", daemon=True
        )
        thread.start()

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ScriptedSmtp:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _connected(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _begin(self, transaction: Transaction) -> None:
        with self._lock:
            self.transactions.append(transaction)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], script: ScriptedSmtp) -> None:
        self.script = script
        super().__init__(address, _Session)

    def handle_error(self, request: object, client_address: object) -> None:
        self.script.errors.append(traceback.format_exc())


class _Session(socketserver.StreamRequestHandler):
    server: _Server
    connection: socket.socket

    def handle(self) -> None:
        script = self.server.script
        number = script._connected()
        self.connection.settimeout(IDLE_TIMEOUT)
        if script.hold_after is not None and number > script.hold_after:
            script._released.wait(IDLE_TIMEOUT)
        self._reply(f"220 {script.hostname} ESMTP scripted")
        helo = ""
        transaction: Transaction | None = None
        while (line := self._line(self.rfile)) is not None:
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                helo, transaction = line, None
                lines = script.ehlo_lines()
                self._reply(
                    "\r\n".join(f"250-{text}" for text in lines[:-1]) + f"\r\n250 {lines[-1]}"
                )
            elif verb == "HELO":
                helo, transaction = line, None
                self._reply(f"250 {script.hostname}")
            elif verb == "MAIL":
                transaction = Transaction(connection=number, helo=helo, mail=line)
                script._begin(transaction)
                self._reply("250 2.1.0 Ok")
            elif verb == "RCPT" and transaction is not None:
                transaction.recipients.append(line)
                address = line.partition("<")[2].partition(">")[0]
                answer = script.rcpt_reply(address)
                if answer.startswith("2"):
                    transaction.accepted.append(address)
                self._reply(answer)
            elif verb == "DATA" and transaction is not None:
                if not transaction.accepted:
                    self._reply("554 5.5.1 No valid recipients")
                    continue
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                data = self._message(self.rfile, script.lenient_line_ends)
                if data is None:
                    return
                transaction.data = data
                transaction = None
                self._reply("250 2.0.0 Ok: queued")
            elif verb == "RSET":
                transaction = None
                self._reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self._reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self._reply("221 2.0.0 Bye")
                return
            elif verb in ("RCPT", "DATA"):
                self._reply("503 5.5.1 Error: need MAIL command")
            else:
                self._reply("502 5.5.2 Error: command not recognized")

    def _reply(self, text: str) -> None:
        self.wfile.write(text.encode("utf-8") + b"\r\n")
        self.wfile.flush()

    @staticmethod
    def _line(stream: BufferedIOBase) -> str | None:
        """The next command line without its line end; None once the client is gone."""
        try:
            raw = stream.readline(MAX_LINE)
        except OSError:
            return None
        if not raw:
            return None
        return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")

    @staticmethod
    def _message(stream: BufferedIOBase, lenient: bool) -> bytes | None:
        """Message lines up to the final dot, dot-unstuffed; None if the client went away."""
        final = (b".\r\n", b".\n") if lenient else (b".\r\n",)
        lines: list[bytes] = []
        while True:
            try:
                raw = stream.readline(MAX_LINE)
            except OSError:
                return None
            if not raw:
                return None
            if raw in final:
                return b"".join(lines)
            lines.append(raw[1:] if raw.startswith(b".") else raw)
