"""The client side of SMTP as a pure state machine: commands out, replies in.

The mirror of :class:`~hato.smtp.ServerConnection`. Each command method returns the
bytes to write and records which reply it expects; the caller feeds what the server
sent with :meth:`ClientConnection.receive_data` and takes each complete reply, matched
to its command, from :meth:`~ClientConnection.next_reply`. The expected replies form a
queue, so a PIPELINING group (MAIL, every RCPT and DATA in one write) is answered in
order (RFC 2920). ESMTP parameters are added only when the server advertised their
extension. Nothing here reads a clock or touches a socket: every line either way is
kept in :attr:`~ClientConnection.transcript`, and the glue adds the times.

``ClientConnection(lmtp=True)`` speaks LMTP (RFC 2033) instead: LHLO in place of EHLO,
and after the message one reply per recipient whose RCPT was accepted, in RCPT order,
each :class:`Response` of ``END_OF_DATA`` naming its recipient as ``argument``.
"""

from __future__ import annotations

import base64
import enum
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NoReturn

from ._address import xtext_encode
from ._content import LineEnds
from ._reply import R_NEEDS_8BITMIME, R_NEEDS_SMTPUTF8, Reply, over_next_hop_size
from ._server import LocalProtocolError

__all__ = [
    "ClientConnection",
    "ClientState",
    "Command",
    "ProtocolError",
    "Response",
    "TranscriptLine",
]

# RFC 5321 4.5.3.1.5 allows 512 octets a reply line; real servers send longer ones, so
# only a line no server could mean (a peer that is not speaking SMTP) is refused.
MAX_REPLY_LINE = 4096
# An EHLO reply has a line per extension; a reply that never ends is not a reply.
MAX_REPLY_LINES = 200


class ProtocolError(Exception):
    """The server's fault: what it sent is not an SMTP reply. ``received`` is the line."""

    def __init__(self, detail: str, received: bytes) -> None:
        super().__init__(f"{detail}: {received[:200]!r}")
        self.detail = detail
        self.received = received


class ClientState(enum.Enum):
    GREETING = "greeting"  # waiting for the 220 banner (or after a refusal: only QUIT)
    CONNECTED = "connected"  # banner accepted: EHLO or HELO next
    GREETED = "greeted"  # EHLO/HELO accepted, no transaction open
    TRANSACTION = "transaction"  # MAIL sent: RCPT, DATA or RSET next
    DATA = "data"  # 354 received: message octets go out
    AUTH = "auth"  # a 334 challenge came: the next AUTH line is due
    TLS = "tls"  # 220 to STARTTLS: waiting for the handshake
    CLOSED = "closed"  # QUIT answered, 421, or a protocol error


class Command(enum.Enum):
    """What a reply answers; the value is how the transcript names it."""

    GREETING = "greeting"
    EHLO = "EHLO"
    LHLO = "LHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    END_OF_DATA = "."
    RSET = "RSET"
    NOOP = "NOOP"
    QUIT = "QUIT"


@dataclass(frozen=True, slots=True)
class Response:
    """One reply and the command it answers (``argument``: the path of MAIL and RCPT)."""

    command: Command
    argument: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One line either way: ``C`` the client's, ``S`` the server's; never message data."""

    direction: Literal["C", "S"]
    text: str


# The rules, written once: which state each command may be sent in.
_ALLOWED: dict[Command, frozenset[ClientState]] = {
    Command.EHLO: frozenset({ClientState.CONNECTED, ClientState.GREETED}),
    Command.HELO: frozenset({ClientState.CONNECTED, ClientState.GREETED}),
    Command.LHLO: frozenset({ClientState.CONNECTED, ClientState.GREETED}),
    Command.STARTTLS: frozenset({ClientState.GREETED}),
    Command.AUTH: frozenset({ClientState.GREETED}),
    Command.MAIL: frozenset({ClientState.GREETED}),
    Command.RCPT: frozenset({ClientState.TRANSACTION}),
    Command.DATA: frozenset({ClientState.TRANSACTION}),
    Command.END_OF_DATA: frozenset({ClientState.DATA}),
    Command.RSET: frozenset({ClientState.GREETED, ClientState.TRANSACTION}),
    Command.NOOP: frozenset({ClientState.CONNECTED, ClientState.GREETED, ClientState.TRANSACTION}),
    Command.QUIT: frozenset(
        {
            ClientState.GREETING,
            ClientState.CONNECTED,
            ClientState.GREETED,
            ClientState.TRANSACTION,
        }
    ),
}
# RFC 2920 3.1: these end a pipelined group, so nothing is sent after them before their
# reply; RFC 3207 and RFC 4954 ask the same of STARTTLS and AUTH. The banner comes first.
_ENDS_GROUP = frozenset(
    {
        Command.GREETING,
        Command.EHLO,
        Command.HELO,
        Command.LHLO,
        Command.STARTTLS,
        Command.AUTH,
        Command.DATA,
        Command.NOOP,
        Command.QUIT,
    }
)
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]|\Z)")
# RFC 3463 class.subject.detail at the start of the text. Without ENHANCEDSTATUSCODES
# only a code followed by text counts, so a text that merely starts with digits stays text.
_ENHANCED_STRICT = re.compile(r"([245])\.[0-9]{1,3}\.[0-9]{1,3}(?= )")
_ENHANCED_ADVERTISED = re.compile(r"([245])\.[0-9]{1,3}\.[0-9]{1,3}(?= |\Z)")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# RFC 6533 QCHAR: printable ASCII but for "\", "+" and "=", kept as is in utf-8-addr-xtext.
_QCHAR = re.compile(r"[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]")
_SECRET = "****"


@dataclass(frozen=True, slots=True)
class _Expected:
    command: Command
    argument: str


class ClientConnection:
    """One SMTP client session, from the server's banner to QUIT."""

    def __init__(self, *, lmtp: bool = False) -> None:
        self.lmtp = lmtp
        self.state = ClientState.GREETING
        self.extensions: dict[str, str] = {}
        self.tls_active = False
        self.authenticated = False
        self.transcript: list[TranscriptLine] = []
        self._in = bytearray()
        self._expected: deque[_Expected] = deque([_Expected(Command.GREETING, "")])
        self._auth_lines: deque[str] = deque()
        # The transaction in progress.
        self._utf8 = False
        self._recipients_sent = 0
        # LMTP: the recipients whose RCPT was accepted, each owed a reply after the data.
        self._accepted: list[str] = []
        self._tail = b"\r\n"  # the last two octets of message data (CRLF: a line starts)
        self._message_size = 0
        self._line_ends = LineEnds()

    # -- what came from the server -----------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server.

        Bytes after STARTTLS's 220 are dropped: they came before the handshake, from anyone
        on the path, and RFC 3207 4.2 has the client forget all it learnt in plaintext.
        """
        if self.state is not ClientState.TLS and self.state is not ClientState.CLOSED:
            self._in += data

    def next_reply(self) -> Response | None:
        """The next complete reply with the command it answers; None until one is whole.

        Raises :class:`ProtocolError` when the server sends something that is not a reply;
        the connection is unusable after that.
        """
        if not self._expected or self.state is ClientState.CLOSED:
            return None
        try:
            answer = self._parse_reply()
        except ProtocolError:
            self.state = ClientState.CLOSED
            self._expected.clear()
            raise
        if answer is None:
            return None
        expected = self._expected.popleft()
        if expected.command is Command.RCPT and answer.is_positive:
            self._accepted.append(expected.argument)
        self._after_reply(expected.command, answer)
        return Response(expected.command, expected.argument, answer)

    @property
    def awaiting(self) -> tuple[Command, ...]:
        """The commands sent whose replies have not come yet, oldest first."""
        return tuple(expected.command for expected in self._expected)

    @property
    def in_transaction(self) -> bool:
        """True from MAIL until the transaction ends (RSET, the final reply, a refused MAIL)."""
        return self.state is ClientState.TRANSACTION or self.state is ClientState.DATA

    def can_send(self, command: Command) -> bool:
        """Whether ``command`` may go out now (its state allows it, and RFC 2920 order)."""
        if self._expected and (self._expected[-1].command in _ENDS_GROUP or not self.pipelining):
            return False
        return self.state in _ALLOWED[command]

    def tls_established(self) -> None:
        """The handshake finished: RFC 3207 4.2, forget what the server said, EHLO again."""
        if self.state is not ClientState.TLS:
            raise LocalProtocolError("tls_established() without a 220 to STARTTLS")
        self.state = ClientState.CONNECTED
        self.tls_active = True
        self.extensions = {}
        self._in.clear()

    # -- extensions ----------------------------------------------------------------------

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    @property
    def size_limit(self) -> int | None:
        """RFC 1870: the advertised fixed limit; None without one (``SIZE 0`` is no limit)."""
        value = self.extensions.get("SIZE", "")
        if value.isascii() and value.isdigit() and int(value) > 0:
            return int(value)
        return None

    @property
    def eight_bit_mime(self) -> bool:
        return "8BITMIME" in self.extensions

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.extensions

    @property
    def dsn(self) -> bool:
        return "DSN" in self.extensions

    @property
    def starttls_offered(self) -> bool:
        return "STARTTLS" in self.extensions

    @property
    def enhanced_status_codes(self) -> bool:
        return "ENHANCEDSTATUSCODES" in self.extensions

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        return tuple(self.extensions.get("AUTH", "").upper().split())

    def check_transaction(
        self, size: int | None, *, needs_smtputf8: bool, eight_bit: bool
    ) -> Reply | None:
        """The refusal to report without sending, when the next hop cannot take the message.

        A message this server cannot take is never tried: no downgrade of 8-bit data or of
        UTF-8 addresses is attempted.
        """
        limit = self.size_limit
        if size is not None and limit is not None and size > limit:
            return over_next_hop_size(size, limit)
        if needs_smtputf8 and not self.smtputf8:
            return R_NEEDS_SMTPUTF8
        if eight_bit and not self.eight_bit_mime:
            return R_NEEDS_8BITMIME
        return None

    # -- commands ----------------------------------------------------------------------

    def ehlo(self, name: str) -> bytes:
        self._not_lmtp(Command.EHLO)
        return self._command(Command.EHLO, f"EHLO {name}")

    def helo(self, name: str) -> bytes:
        self._not_lmtp(Command.HELO)
        return self._command(Command.HELO, f"HELO {name}")

    def lhlo(self, name: str) -> bytes:
        """RFC 2033 4.1: LMTP's greeting, answered as EHLO is (its extensions)."""
        if not self.lmtp:
            raise LocalProtocolError("LHLO on an SMTP connection")
        return self._command(Command.LHLO, f"LHLO {name}")

    def _not_lmtp(self, command: Command) -> None:
        # RFC 2033 4.1: an LMTP client greets with LHLO only; EHLO and HELO are refused.
        if self.lmtp:
            raise LocalProtocolError(f"{command.value} on an LMTP connection: use LHLO")

    def starttls(self) -> bytes:
        return self._command(Command.STARTTLS, "STARTTLS")

    def auth_plain(self, user: str, password: str) -> bytes:
        """RFC 4616 PLAIN with the initial response (RFC 4954 section 4)."""
        token = _b64(f"\0{user}\0{password}")
        return self._command(Command.AUTH, f"AUTH PLAIN {token}", shown=f"AUTH PLAIN {_SECRET}")

    def auth_login(self, user: str, password: str) -> bytes:
        """LOGIN: the user name and the password each answer a 334, via ``auth_continue``."""
        data = self._command(Command.AUTH, "AUTH LOGIN")
        self._auth_lines.extend((_b64(user), _b64(password)))
        return data

    def auth_continue(self) -> bytes:
        """Answer a 334 challenge; with nothing left to say, cancel with ``*`` (RFC 4954 4)."""
        if self.state is not ClientState.AUTH:
            raise LocalProtocolError("auth_continue() without a 334 challenge")
        self.state = ClientState.GREETED
        if self._auth_lines:
            line = self._auth_lines.popleft()
            return self._command(Command.AUTH, line, shown=_SECRET)
        return self._command(Command.AUTH, "*")

    def mail(
        self,
        reverse_path: str,
        *,
        size: int | None = None,
        body: str | None = None,
        smtputf8: bool = False,
        ret: str | None = None,
        envid: str | None = None,
    ) -> bytes:
        """MAIL FROM, with each parameter only when the server advertised its extension."""
        utf8 = smtputf8 and self.smtputf8
        _check_ascii(reverse_path, utf8)
        params = []
        if size is not None and "SIZE" in self.extensions:
            params.append(f"SIZE={size}")
        if body is not None:
            if body.upper() not in ("7BIT", "8BITMIME"):
                raise ValueError(f"BODY={body} cannot be sent with DATA")
            if self.eight_bit_mime:
                params.append(f"BODY={body.upper()}")
        if utf8:
            params.append("SMTPUTF8")
        if self.dsn:
            if ret is not None:
                if ret.upper() not in ("FULL", "HDRS"):
                    raise ValueError(f"RET must be FULL or HDRS, not {ret!r}")
                params.append(f"RET={ret.upper()}")
            if envid is not None:
                params.append(f"ENVID={xtext_encode(envid)}")
        line = " ".join([f"MAIL FROM:<{reverse_path}>", *params])
        data = self._command(Command.MAIL, line, argument=reverse_path)
        self.state = ClientState.TRANSACTION
        self._utf8, self._recipients_sent, self._accepted = utf8, 0, []
        return data

    def rcpt(self, address: str, *, notify: Iterable[str] = (), orcpt: str | None = None) -> bytes:
        """RCPT TO; NOTIFY and ORCPT (RFC 3461) only when the server advertised DSN."""
        _check_ascii(address, self._utf8)
        params = []
        notify = tuple(item.upper() for item in notify)
        if notify and notify != ("NEVER",) and not set(notify) <= _NOTIFY:
            raise ValueError(f"NOTIFY must be NEVER or SUCCESS, FAILURE, DELAY: {notify}")
        if self.dsn:
            if notify:
                params.append("NOTIFY=" + ",".join(notify))
            if orcpt is not None:
                params.append("ORCPT=" + _orcpt(orcpt))
        line = " ".join([f"RCPT TO:<{address}>", *params])
        data = self._command(Command.RCPT, line, argument=address)
        self._recipients_sent += 1
        return data

    def data(self) -> bytes:
        if self.state is ClientState.TRANSACTION and not self._recipients_sent:
            raise LocalProtocolError("DATA before any RCPT")
        return self._command(Command.DATA, "DATA")

    def message_chunk(self, chunk: bytes) -> bytes:
        """Message octets, sent with CRLF line ends and dot-stuffed as RFC 5321 4.5.2 asks.

        Chunks may be cut anywhere: a line's leading dot is found even when the line's
        CRLF ended the previous chunk. A bare CR or LF, whatever was stored, goes out as
        CRLF: the next hop may take either for a line end (and a "\\n.\\n" for the end of
        the data, CVE-2023-51764), so the line structure it sees must be the one we saw.
        """
        self._require(Command.END_OF_DATA)
        self._message_size += len(chunk)
        return self._stuff(self._line_ends.feed(chunk))

    def _stuff(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        joined = self._tail + chunk
        # The tail is unchanged by the replacement, so slicing it off leaves the new octets.
        stuffed = joined.replace(b"\r\n.", b"\r\n..")[len(self._tail) :]
        self._tail = joined[-2:]
        return stuffed

    def end_of_data(self) -> bytes:
        """The final ``<CRLF>.<CRLF>``; a message not ending in CRLF gets one first."""
        self._require(Command.END_OF_DATA)
        held = self._stuff(self._line_ends.finish())
        note = f"<message data, {self._message_size} octets>"
        if self._line_ends.bare:
            note = f"<message data, {self._message_size} octets, bare CR or LF sent as CRLF>"
        self.transcript.append(TranscriptLine("C", note))
        ending = b".\r\n" if self._tail == b"\r\n" else b"\r\n.\r\n"
        self._tail, self._message_size, self._line_ends = b"\r\n", 0, LineEnds()
        self._command(Command.END_OF_DATA, ".")
        if self.lmtp:
            # RFC 2033 4.2: one reply per accepted recipient, in order. A server that
            # took DATA without any (against 4.2's 503) still owes the dot one reply.
            owed = self._accepted or [""]
            self._expected[-1] = _Expected(Command.END_OF_DATA, owed[0])
            self._expected.extend(_Expected(Command.END_OF_DATA, rcpt) for rcpt in owed[1:])
            self._accepted = []
        # The transaction ends with the reply, whatever it says; RFC 2920 lets MAIL follow.
        self.state = ClientState.GREETED
        return held + ending

    def rset(self) -> bytes:
        data = self._command(Command.RSET, "RSET")
        self.state = ClientState.GREETED
        return data

    def noop(self) -> bytes:
        return self._command(Command.NOOP, "NOOP")

    def quit(self) -> bytes:
        return self._command(Command.QUIT, "QUIT")

    # -- internals ---------------------------------------------------------------------

    def _require(self, command: Command) -> None:
        if self.state not in _ALLOWED[command]:
            raise LocalProtocolError(f"{command.value} not allowed in state {self.state.value}")

    def _command(
        self, command: Command, line: str, *, argument: str = "", shown: str | None = None
    ) -> bytes:
        if self._expected:
            last = self._expected[-1].command
            if last in _ENDS_GROUP:
                raise LocalProtocolError(f"{command.value} sent before the reply to {last.value}")
            if not self.pipelining:
                raise LocalProtocolError(f"{command.value} pipelined without PIPELINING")
        self._require(command)
        if any(char in line for char in "\r\n\0"):
            raise ValueError(f"CR, LF or NUL in a command line: {line!r}")
        self._expected.append(_Expected(command, argument))
        self.transcript.append(TranscriptLine("C", line if shown is None else shown))
        return line.encode("utf-8") + b"\r\n"

    def _parse_reply(self) -> Reply | None:
        """Take one whole reply off the input, or None while its last line is still due."""
        buf = self._in
        lines: list[str] = []
        code = b""
        position = 0
        while True:
            end = buf.find(b"\n", position)
            if end < 0:
                if len(buf) - position > MAX_REPLY_LINE:
                    self._malformed("reply line too long", bytes(buf[position:]))
                return None
            raw = bytes(buf[position:end]).removesuffix(b"\r")
            position = end + 1
            match = _REPLY_LINE.match(raw)
            if match is None:
                self._malformed("not an SMTP reply line", raw)
            if code and match.group(1) != code:
                self._malformed(f"reply line with code {code.decode()} expected", raw)
            if len(raw) > MAX_REPLY_LINE:
                self._malformed("reply line too long", raw)
            if len(lines) >= MAX_REPLY_LINES:
                self._malformed("reply too long", raw)
            if b"\r" in raw:
                self._malformed("CR inside a reply line", raw)
            code = match.group(1)
            lines.append(raw[4:].decode("utf-8", errors="replace"))
            self.transcript.append(TranscriptLine("S", raw.decode("utf-8", errors="replace")))
            if match.group(2) != b"-":
                break
        del buf[:position]
        return self._reply(int(code), lines)

    def _malformed(self, detail: str, raw: bytes) -> NoReturn:
        self.transcript.append(TranscriptLine("S", raw.decode("utf-8", errors="replace")))
        raise ProtocolError(detail, raw)

    def _reply(self, code: int, lines: list[str]) -> Reply:
        pattern = _ENHANCED_ADVERTISED if self.enhanced_status_codes else _ENHANCED_STRICT
        match = pattern.match(lines[0])
        if match is None or match.group(1) != str(code)[0]:
            return Reply(code, None, tuple(lines))
        enhanced = match.group(0)
        # RFC 2034 section 4: every line carries the code; a line with another one keeps it.
        texts = tuple(
            line[len(enhanced) + 1 :]
            if line.startswith(enhanced + " ")
            else ("" if line == enhanced else line)
            for line in lines
        )
        return Reply(code, enhanced, texts)

    def _after_reply(self, command: Command, answer: Reply) -> None:
        ok = answer.is_positive
        if answer.code == 421:
            # RFC 5321 3.8: the server is closing the channel; nothing else will be answered.
            self.state = ClientState.CLOSED
            self._expected.clear()
            return
        match command:
            case Command.GREETING if answer.code == 220:
                self.state = ClientState.CONNECTED
            case Command.EHLO | Command.LHLO if ok:
                self.state, self.extensions = ClientState.GREETED, _extensions(answer)
            case Command.HELO if ok:
                self.state, self.extensions = ClientState.GREETED, {}
            case Command.STARTTLS if answer.code == 220:
                # Whatever followed the 220 was sent before the handshake: never read it.
                self.state = ClientState.TLS
                self._in.clear()
            case Command.AUTH:
                self._after_auth(answer.code)
            case Command.MAIL if not ok and self.state is ClientState.TRANSACTION:
                self.state = ClientState.GREETED
            case Command.DATA if answer.code == 354:
                # Even when no RCPT was accepted: RFC 2920 3.1, the client then sends a lone dot.
                self.state = ClientState.DATA
            case Command.QUIT:
                self.state = ClientState.CLOSED

    def _after_auth(self, code: int) -> None:
        if code == 334:
            self.state = ClientState.AUTH
            return
        self._auth_lines.clear()
        self.authenticated = self.authenticated or code == 235


def _extensions(answer: Reply) -> dict[str, str]:
    """RFC 5321 4.1.1.1: the lines after the first are ``keyword [parameters]``."""
    found: dict[str, str] = {}
    for line in answer.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        key = keyword.upper()
        if key.startswith("AUTH="):
            # The pre-RFC 4954 form some servers still send beside (or instead of) AUTH.
            key, params = "AUTH", f"{keyword[5:]} {params}"
        if key:
            found.setdefault(key, " ".join(params.split()))
    return found


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _check_ascii(path: str, utf8: bool) -> None:
    # RFC 6531 3.2: a non-ASCII address only in a transaction that has SMTPUTF8.
    if not utf8 and not path.isascii():
        raise ValueError(f"non-ASCII address without SMTPUTF8: {path!r}")


def _orcpt(orcpt: str) -> str:
    """ORCPT as ``rfc822;`` + xtext (RFC 3461 4.2), from ``type;address`` or an address.

    A non-ASCII address becomes RFC 6533 ``utf-8;`` utf-8-addr-xtext; a value already of
    another type (as the server kept it) is passed on as it was received.
    """
    addr_type, semicolon, address = orcpt.partition(";")
    if not semicolon:
        addr_type, address = "rfc822", orcpt
    if addr_type.lower() != "rfc822":
        if not orcpt.isascii() or any(char.isspace() or char == "=" for char in address):
            raise ValueError(f"ORCPT cannot be sent as it is: {orcpt!r}")
        return f"{addr_type};{address}"
    if address.isascii():
        return f"rfc822;{xtext_encode(address)}"
    encoded = "".join(char if _QCHAR.match(char) else f"\\x{{{ord(char):02X}}}" for char in address)
    return f"utf-8;{encoded}"
