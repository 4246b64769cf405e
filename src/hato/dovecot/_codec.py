"""Dovecot's auth protocols as pure state machines: lines in, events out, commands out.

Two of them, both line based (LF-terminated, TAB-separated, Dovecot's \\001 escaping):

- the master (userdb) protocol of the ``auth-userdb`` socket: ``USER`` asks whether a user
  exists (``UserdbCodec``);
- the client protocol of the ``auth-client`` socket: the mechanisms Dovecot offers, then
  ``AUTH``/``CONT`` answered by ``CONT``, ``OK`` or ``FAIL`` (``AuthCodec``).

Nothing here touches a socket or a clock; ``_client.py`` is the asyncio glue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AuthCodec",
    "AuthContinue",
    "AuthFailed",
    "AuthOk",
    "DovecotProtocolError",
    "Handshake",
    "LookupFailed",
    "Mechanism",
    "UserFound",
    "UserNotFound",
    "UserdbCodec",
    "escape",
    "unescape",
]

MAJOR_VERSION = "1"  # both protocols: a different major version is another protocol
# Lines are "expected to fit into 16384 bytes" (the protocol's own document); a longer
# one is a peer that is not speaking it.
MAX_LINE = 65536

_ESCAPES = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n", "\0": "\x010"}
_UNESCAPES = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n", "l": "\n", "0": "\0"}


class DovecotProtocolError(Exception):
    """Dovecot's side said something that is not the protocol (or another version of it)."""


def escape(text: str) -> str:
    """Dovecot's tab-escaping: TAB, CR, LF, NUL and \\001 cannot appear as they are."""
    return "".join(_ESCAPES.get(char, char) for char in text)


def unescape(text: str) -> str:
    if "\x01" not in text:
        return text
    out, chars = [], iter(text)
    for char in chars:
        if char == "\x01":
            following = next(chars, "")
            out.append(_UNESCAPES.get(following, following))
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Handshake:
    """The server's handshake is complete (for the client protocol: its mechanisms)."""

    mechanisms: tuple[Mechanism, ...] = ()


@dataclass(frozen=True, slots=True)
class Mechanism:
    name: str
    flags: frozenset[str] = frozenset()  # plaintext, dictionary, private, ...


@dataclass(frozen=True, slots=True)
class UserFound:
    request: int
    user: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserNotFound:
    request: int


@dataclass(frozen=True, slots=True)
class LookupFailed:
    """An internal failure on Dovecot's side (a database down): try again later."""

    request: int
    reason: str


@dataclass(frozen=True, slots=True)
class AuthContinue:
    request: int
    challenge: str  # base64, as it goes to the SMTP client in a 334


@dataclass(frozen=True, slots=True)
class AuthOk:
    request: int
    user: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    request: int
    user: str
    temporary: bool  # "temp": Dovecot's own trouble, not the password
    reason: str = ""  # text Dovecot allows the client to see


Event = Handshake | UserFound | UserNotFound | LookupFailed | AuthContinue | AuthOk | AuthFailed


def _params(parts: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in parts:
        name, _, value = part.partition("=")
        params[name] = value
    return params


class _Lines:
    """Cuts the input into lines and the lines into unescaped fields."""

    def __init__(self) -> None:
        self._in = bytearray()
        self._next_id = 0

    def receive(self, data: bytes) -> list[list[str]]:
        self._in += data
        lines = []
        while (end := self._in.find(b"\n")) >= 0:
            raw = bytes(self._in[:end])
            del self._in[: end + 1]
            text = raw.decode("utf-8", errors="replace")
            lines.append([unescape(part) for part in text.split("\t")])
        if len(self._in) > MAX_LINE:
            raise DovecotProtocolError(f"a line longer than {MAX_LINE} bytes")
        return lines

    def request_id(self) -> int:
        self._next_id += 1
        return self._next_id


def _version(parts: list[str]) -> None:
    if len(parts) < 2 or parts[1] != MAJOR_VERSION:
        raise DovecotProtocolError(f"unsupported protocol version: {' '.join(parts[1:])!r}")


def _request(parts: list[str]) -> int:
    if len(parts) < 2 or not parts[1].isascii() or not parts[1].isdigit():
        raise DovecotProtocolError(f"{parts[0]} without a request id")
    return int(parts[1])


class UserdbCodec:
    """The master side of ``auth-userdb``: ``hello()``, then ``lookup(user)`` per question.

    RFC-style rules from Dovecot's protocol document: the server opens with ``VERSION``
    (then ``SPID``); the master answers ``VERSION``; each ``USER`` gets ``USER`` (found),
    ``NOTFOUND`` or ``FAIL`` with the request's id.
    """

    def __init__(self) -> None:
        self._lines = _Lines()
        self.ready = False

    def hello(self) -> bytes:
        return f"VERSION\t{MAJOR_VERSION}\t1\n".encode()

    def lookup(self, user: str, service: str = "smtp") -> tuple[int, bytes]:
        request = self._lines.request_id()
        line = f"USER\t{request}\t{escape(user)}\tservice={escape(service)}\n"
        return request, line.encode("utf-8")

    def receive(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for parts in self._lines.receive(data):
            match parts[0]:
                case "VERSION":
                    _version(parts)
                case "SPID":
                    self.ready = True
                    events.append(Handshake())
                case "USER":
                    request = _request(parts)
                    user = parts[2] if len(parts) > 2 else ""
                    events.append(UserFound(request, user, _params(parts[3:])))
                case "NOTFOUND":
                    events.append(UserNotFound(_request(parts)))
                case "FAIL":
                    reason = _params(parts[2:]).get("reason", "")
                    events.append(LookupFailed(_request(parts), reason or "lookup failed"))
                case other:
                    raise DovecotProtocolError(f"unexpected {other[:40]!r} on auth-userdb")
        return events


class AuthCodec:
    """The client side of ``auth-client``: ``hello(pid)``, the mechanisms at ``DONE``, then
    ``start``/``answer`` per exchange, each answered by ``CONT``, ``OK`` or ``FAIL``."""

    def __init__(self) -> None:
        self._lines = _Lines()
        self._mechanisms: list[Mechanism] = []
        self.ready = False

    def hello(self, pid: int) -> bytes:
        return f"VERSION\t{MAJOR_VERSION}\t2\nCPID\t{pid}\n".encode()

    def start(
        self,
        mechanism: str,
        *,
        service: str = "smtp",
        initial: str | None = None,
        secured: bool = False,
        client_ip: str = "",
        local_ip: str = "",
    ) -> tuple[int, bytes]:
        """``AUTH``; ``initial`` is the client's initial response, base64 ("=" for empty)."""
        request = self._lines.request_id()
        parts = ["AUTH", str(request), escape(mechanism), f"service={escape(service)}"]
        if secured:
            parts.append("secured")
        if client_ip:
            parts.append(f"rip={escape(client_ip)}")
        if local_ip:
            parts.append(f"lip={escape(local_ip)}")
        if initial is not None:
            # The protocol's rule: resp= comes last, everything after it is ignored.
            parts.append(f"resp={escape('' if initial == '=' else initial)}")
        return request, ("\t".join(parts) + "\n").encode("utf-8")

    def answer(self, request: int, response: str) -> bytes:
        """``CONT``: the client's base64 answer to a challenge."""
        return f"CONT\t{request}\t{escape(response)}\n".encode()

    def receive(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for parts in self._lines.receive(data):
            match parts[0]:
                case "VERSION":
                    _version(parts)
                case "MECH" if len(parts) > 1:
                    self._mechanisms.append(Mechanism(parts[1].upper(), frozenset(parts[2:])))
                case "SPID" | "CUID" | "COOKIE":
                    pass
                case "DONE":
                    self.ready = True
                    events.append(Handshake(tuple(self._mechanisms)))
                case "CONT":
                    request = _request(parts)
                    events.append(AuthContinue(request, parts[2] if len(parts) > 2 else ""))
                case "OK":
                    params = _params(parts[2:])
                    events.append(AuthOk(_request(parts), params.get("user", "")))
                case "FAIL":
                    params = _params(parts[2:])
                    events.append(
                        AuthFailed(
                            _request(parts),
                            params.get("user", ""),
                            "temp" in params,
                            params.get("reason", ""),
                        )
                    )
                case other:
                    raise DovecotProtocolError(f"unexpected {other[:40]!r} on auth-client")
        return events
