"""An "accept everything" caller around ``ServerConnection``, so tests read as
bytes in -> replies and message octets out.

The caller answers every event that needs a reply the way a permissive server
would (250 to Hello, MAIL and RCPT; 354 to DATA; 250, or the engine's own problem,
at the end of a message) and keeps what the engine handed it: events, message
octets and every write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeVar

from hato.smtp import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AuthResponse,
    AuthStart,
    DataChunk,
    DataCommand,
    Event,
    Hello,
    Limits,
    MailFrom,
    MessageEnd,
    RcptTo,
    Reply,
    ServerConnection,
    StartTls,
    reply,
)

HOST = "mx.example.test"
NEEDS_REPLY = (Hello, MailFrom, RcptTo, DataCommand, MessageEnd, StartTls, AuthStart, AuthResponse)

T = TypeVar("T")
Chunking = Callable[[bytes], Iterable[bytes]]
Answer = Callable[[Event], Reply]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def sevens(data: bytes) -> list[bytes]:
    # Seven does not divide CRLF-aligned lines evenly, so pairs and dots straddle reads.
    return [data[i : i + 7] for i in range(0, len(data), 7)]


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(data)})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def reply_lines(output: bytes) -> list[str]:
    """The reply lines in ``output``, without their CRLF (which every line must have)."""
    if not output:
        return []
    assert output.endswith(b"\r\n"), output
    return output.decode("utf-8").split("\r\n")[:-1]


def reply_codes(output: bytes) -> list[int]:
    """The code of each complete reply (one per final ``ddd `` line)."""
    return [int(line[:3]) for line in reply_lines(output) if line[3:4] == " "]


def default_answer(conn: ServerConnection, event: Event, queued: int) -> Reply:
    match event:
        case Hello(extended=True):
            return Reply(250, None, (HOST, *conn.ehlo_keywords()))
        case Hello():
            return reply(250, None, HOST)
        case MailFrom():
            return reply(250, "2.1.0", "Ok")
        case RcptTo():
            return reply(250, "2.1.5", "Ok")
        case DataCommand():
            return reply(354, None, "End data with <CR><LF>.<CR><LF>")
        case MessageEnd(problem=problem):
            return problem or reply(250, "2.0.0", f"Ok: queued as Q{queued}")
        case StartTls():
            return reply(220, "2.0.0", "Ready to start TLS")
        case AuthStart(initial_response=None):
            return reply(334, None, "")
        case AuthStart() | AuthResponse():
            return reply(235, "2.7.0", "Authentication successful")
    raise AssertionError(f"no answer for {event!r}")


@dataclass
class Message:
    data: bytes
    problem: Reply | None


class AcceptAll:
    """Drives one ``ServerConnection`` and answers yes to everything it may decide."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        chunking: Chunking = whole,
        tls_available: bool = False,
        auth_mechanisms: tuple[str, ...] = (),
        answers: Mapping[type, Answer] | None = None,
        greet: bool = False,
    ) -> None:
        self.conn = ServerConnection(
            HOST, limits, tls_available=tls_available, auth_mechanisms=auth_mechanisms
        )
        self.chunking = chunking
        self.answers = dict(answers or {})
        self.events: list[Event] = []
        self.ends: list[Message] = []  # one per MessageEnd, refused ones included
        self.writes: list[bytes] = []  # each non-empty data_to_send()
        self.last: object = NEED_DATA  # the sentinel the last pump stopped at
        self._data = bytearray()
        if greet:
            self.conn.send_greeting(reply(220, None, f"{HOST} ESMTP Hato"))

    @property
    def messages(self) -> list[bytes]:
        """The octets of every accepted message."""
        return [m.data for m in self.ends if m.problem is None]

    def of_type(self, kind: type[T]) -> list[T]:
        return [event for event in self.events if isinstance(event, kind)]

    def feed(self, data: bytes) -> list[str]:
        """Feed ``data`` in the pieces ``chunking`` cuts; return the reply lines written."""
        return reply_lines(self.feed_bytes(data))

    def feed_bytes(self, data: bytes) -> bytes:
        out = bytearray()
        for piece in self.chunking(data) if data else [b""]:
            self.conn.receive_data(piece)
            self.pump()
            written = self.conn.data_to_send()
            if written:
                self.writes.append(written)
            out += written
        return bytes(out)

    def pump(self) -> None:
        conn = self.conn
        while True:
            event = conn.next_event()
            self.check()
            if event is NEED_DATA or event is PAUSED or event is CLOSED:
                self.last = event
                return
            self.events.append(event)
            self.on_event(event)
            if isinstance(event, DataChunk):
                self._data += event.data
            elif isinstance(event, MailFrom):
                self._data.clear()  # octets of a transaction that never ended are dropped
            if not isinstance(event, NEEDS_REPLY):
                continue
            answer = self.answer(event)
            if isinstance(event, MessageEnd):
                self.ends.append(Message(bytes(self._data), event.problem))
                self._data.clear()
            conn.send_reply(answer)
            self.check()

    def answer(self, event: Event) -> Reply:
        custom = self.answers.get(type(event))
        if custom is not None:
            return custom(event)
        return default_answer(self.conn, event, len(self.ends) + 1)

    def on_event(self, event: Event) -> None:
        """A hook called with each event before it is answered; the property tests use it."""

    def check(self) -> None:
        """A hook called after every ``next_event()``; the property tests use it."""


def dialog(text: str) -> list[tuple[bytes, list[str]]]:
    """Read a ``C:``/``S:`` transcript into (client bytes, expected reply lines) steps.

    Consecutive ``C:`` lines form one step, each sent with CRLF; the ``S:`` lines after
    them are what the server must answer to that step.
    """
    steps: list[tuple[bytes, list[str]]] = []
    client = bytearray()
    server: list[str] = []
    for raw in text.strip("\n").splitlines():
        line = raw.strip()
        side, rest = line[:2], line[3:] if len(line) > 3 else ""
        if side == "C:":
            if server:
                steps.append((bytes(client), server))
                client, server = bytearray(), []
            client += rest.encode("utf-8") + b"\r\n"
        elif side == "S:":
            server.append(rest)
        else:
            raise ValueError(f"not a transcript line: {raw!r}")
    steps.append((bytes(client), server))
    return steps
