"""The server side of SMTP as a pure state machine: bytes in, events out, replies in.

The caller feeds received bytes with :meth:`ServerConnection.receive_data`, pulls
events with :meth:`~ServerConnection.next_event`, answers the events that need it
with :meth:`~ServerConnection.send_reply`, and writes :meth:`~ServerConnection.data_to_send`
to the peer. Syntax, sequence and limit errors are answered here, so the caller
only decides what policy decides. Nothing here reads a clock or touches a socket.

Pipelining (RFC 2920) falls out of the design: the engine never parses a command
before the previous one is answered, so replies keep their order, and everything
the caller answers in one pass goes out in one write.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from ._address import AddressError, parse_path, split_path
from ._content import ContentCheck
from ._events import (
    AuthResponse,
    AuthStart,
    CommandRejected,
    DataChunk,
    DataCommand,
    Event,
    Hello,
    MailFrom,
    MessageEnd,
    RcptTo,
    Reset,
    StartTls,
)
from ._help import help_reply
from ._limits import Limits
from ._params import MailParams, ParamError, RcptParams, parse_mail_params, parse_rcpt_params
from ._reply import Reply, reply

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "PAUSED",
    "LocalProtocolError",
    "ServerConnection",
    "State",
    "Transaction",
]


class State(enum.Enum):
    CONNECTED = "connected"  # before HELO/EHLO
    GREETED = "greeted"  # ready for MAIL
    MAIL = "mail"  # reverse-path accepted
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # reading DATA until <CRLF>.<CRLF>
    BDAT = "bdat"  # reading the octets of one BDAT chunk
    AUTH = "auth"  # a 334 challenge is out; the next line is the answer
    TLS = "tls"  # 220 to STARTTLS sent; waiting for the handshake
    REFUSED = "refused"  # greeted with 554: nothing but QUIT is served (RFC 5321 3.1)
    CLOSED = "closed"


class _Sentinel(enum.Enum):
    NEED_DATA = "need data"
    PAUSED = "paused"
    CLOSED = "closed"


NEED_DATA: Final = _Sentinel.NEED_DATA  # feed more bytes
PAUSED: Final = _Sentinel.PAUSED  # answer the pending event (or finish the TLS handshake)
CLOSED: Final = _Sentinel.CLOSED  # the session is over; close the transport


class LocalProtocolError(RuntimeError):
    """Our own bug: the caller used the engine out of order (never the peer's fault)."""


@dataclass(slots=True)
class Transaction:
    """The envelope being built: RFC 5321 3.3's reverse-path, forward-paths and parameters."""

    reverse_path: str
    params: MailParams
    recipients: list[tuple[str, RcptParams]] = field(default_factory=list)
    chunked: bool = False  # a BDAT chunk was sent: DATA is no longer allowed


# Bytes that make a command line need editing: backspace and DEL erase what is before them.
_EDIT_BYTES = re.compile(rb"[\x08\x7f]")
# The verb of a command line whose octets are refused, to name it in the reply and the log.
_VERB = re.compile(rb"[A-Za-z]+")
_TELNET_OPTION_VERBS = frozenset({251, 252, 253, 254})  # WILL WONT DO DONT + option byte
_TELNET_SB, _TELNET_SE, _TELNET_IAC = 250, 240, 255
# RFC 3461 section 5 (ORCPT, ENVID: 500 each), RFC 4954 section 5 (AUTH=: 500).
_PARAMETER_ALLOWANCE = 1000
# RFC 4954 section 4: a SASL response line may be up to 12288 octets.
_MAX_AUTH_LINE = 12288
# Postfix's smtpd_forbidden_commands: a web client talking to port 25 is shown the door.
_HTTP_VERBS = frozenset({"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"})

_R_NEED_HELO = reply(503, "5.5.1", "Error: send HELO/EHLO first")
_R_NEED_MAIL = reply(503, "5.5.1", "Error: need MAIL command")
_R_NEED_RCPT = reply(503, "5.5.1", "Error: need RCPT command")
_R_IN_TXN = reply(503, "5.5.1", "Error: MAIL transaction in progress")
_R_OK = reply(250, "2.0.0", "Ok")
_R_REFUSED = reply(503, "5.5.1", "Error: this server refused the connection; send QUIT")
# What stands in the transcript for AUTH data (credentials, challenges).
_SECRET = "****"
# What an unknown line gets while the client may be sending SASL answers (see _masking).
_R_MASKED = reply(500, "5.5.2", "Error: command unrecognized (not shown: it may be an AUTH answer)")
# RFC 4954 6: the mechanisms exist, but only inside TLS, so they are not advertised yet.
_R_ENCRYPTION_REQUIRED = reply(
    538,
    "5.7.11",
    "Encryption required for requested authentication mechanism (issue STARTTLS first)",
)
_R_VRFY = reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")


class ServerConnection:
    """One SMTP server session, from the greeting to QUIT."""

    def __init__(
        self,
        hostname: str,
        limits: Limits | None = None,
        *,
        tls_available: bool = False,
        tls_active: bool = False,
        auth_mechanisms: tuple[str, ...] = (),
    ) -> None:
        self.hostname = hostname
        self.limits = limits or Limits()
        self.tls_available = tls_available
        self.tls_active = tls_active
        self.auth_mechanisms = auth_mechanisms
        # AUTH is offered once TLS is up: before, AUTH gets 538 (RFC 4954 6), not 502.
        self.auth_needs_tls = False
        self.state = State.CONNECTED
        self.helo: str | None = None
        self.extended = False
        self.authenticated = False
        self.transaction: Transaction | None = None
        self.errors = 0
        # Forgiven until a message is accepted: RCPTs past the limit, junk commands.
        self._overshoot = 0
        self._junk = 0
        # Opt in by setting a list: every command line and reply line, never message data,
        # AUTH secrets masked. The caller drains it (the flight recorder).
        self.transcript: list[tuple[str, str]] | None = None
        self._in = bytearray()
        self._out = bytearray()
        self._ready: deque[Event] = deque()
        self._pending: Event | None = None
        self._skipping_long_line = 0  # while a too-long line is skipped: its limit
        # After an AUTH that did not succeed, the client's next lines may be its pipelined
        # SASL answers: until the next known command, unknown lines are never shown.
        self._masking = False
        self._resume = State.GREETED  # where AUTH and BDAT return to
        # Message reading (DATA and BDAT).
        self._line_start = True
        self._content = ContentCheck(self.limits)
        self._chunk_left = 0
        self._chunk_last = False
        self._chunk_refusal: Reply | None = None

    # -- the caller's side -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer. Bytes after STARTTLS's 220 are dropped (CVE-2011-0411)."""
        if self.state is not State.TLS and self.state is not State.CLOSED:
            self._in += data

    def data_to_send(self) -> bytes:
        """Everything answered so far, to be written in one go."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def buffered(self) -> int:
        """Octets received but not yet parsed."""
        return len(self._in)

    @property
    def awaiting_reply(self) -> Event | None:
        return self._pending

    @property
    def in_message(self) -> bool:
        """True while message octets are being read (DATA or BDAT)."""
        return self.state is State.DATA or self.state is State.BDAT

    def send_greeting(self, greeting: Reply) -> None:
        """The 220 banner, a 421 (the caller closes) or a 554 refusal.

        RFC 5321 3.1: after a 554 greeting the server waits for QUIT and answers anything
        else with 503, so the client learns why rather than seeing the connection drop.
        """
        self._write(greeting)
        if greeting.code == 554:
            self.state = State.REFUSED

    def close_with(self, final: Reply) -> None:
        """End the session with a last reply (421 for timeouts and shutdown)."""
        if self.state is not State.CLOSED:
            self._write(final)
            self.state, self.transaction = State.CLOSED, None
            self._pending = None

    def tls_established(self) -> None:
        """The handshake finished: RFC 3207 4.2, the session starts over, nothing is kept."""
        if self.state is not State.TLS:
            raise LocalProtocolError("tls_established() without a STARTTLS")
        self.tls_active = True
        self.state = State.CONNECTED
        self.helo, self.extended, self.transaction = None, False, None
        self.authenticated = False
        self._in.clear()

    def ehlo_keywords(self) -> list[str]:
        """The EHLO extension lines, in the order they are advertised."""
        keywords = [
            "PIPELINING",
            f"SIZE {self.limits.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "DSN",
            "CHUNKING",
        ]
        if self.tls_available and not self.tls_active:
            keywords.append("STARTTLS")
        if self.auth_mechanisms and not self.authenticated:
            keywords.append("AUTH " + " ".join(self.auth_mechanisms))
        keywords.append("HELP")
        return keywords

    def next_event(self) -> Event | _Sentinel:
        """The next event, or NEED_DATA, PAUSED (answer first) or CLOSED."""
        while True:
            if self._ready:
                event = self._ready.popleft()
                if _needs_reply(event):
                    self._pending = event
                return event
            if self._pending is not None or self.state is State.TLS:
                return PAUSED
            state = self.state
            if state is State.CLOSED:
                return CLOSED
            if state is State.DATA:
                if not self._read_data():
                    return NEED_DATA
            elif state is State.BDAT:
                if not self._read_chunk():
                    return NEED_DATA
            elif not self._read_command():
                return NEED_DATA

    def send_reply(self, answer: Reply) -> None:
        """Answer the pending event; the engine moves on according to the reply code."""
        event = self._pending
        if event is None:
            raise LocalProtocolError("send_reply() with no event waiting for a reply")
        self._pending = None
        ok = answer.code < 400
        match event:
            case Hello(name=name, extended=extended) if ok:
                self.state, self.transaction = State.GREETED, None
                self.helo, self.extended = name, extended
            case MailFrom(reverse_path=path, params=params) if ok:
                self.state, self.transaction = State.MAIL, Transaction(path, params)
            case RcptTo(forward_path=path, params=params) if ok:
                assert self.transaction is not None
                self.transaction.recipients.append((path, params))
                self.state = State.RCPT
            case DataCommand() if answer.code == 354:
                self._start_message()
                self.state = State.DATA
            case MessageEnd():
                self.state, self.transaction = State.GREETED, None
                if ok:
                    self._overshoot = self._junk = 0
            case StartTls() if answer.code == 220:
                self.state = State.TLS
                self._in.clear()
            case AuthStart() | AuthResponse():
                self._after_auth_reply(answer.code)
        self._emit(answer)

    # -- replies ---------------------------------------------------------------------

    def _write(self, answer: Reply) -> None:
        if self.transcript is None:
            self._out += answer.to_bytes()
            return
        lines = answer.wire_lines()
        self._out += ("\r\n".join(lines) + "\r\n").encode("utf-8")
        if answer.code == 334:
            # RFC 4954 4: the challenge is base64 that may echo what the client sent.
            self.transcript.append(("S", "334 " + _SECRET))
        else:
            self.transcript.extend(("S", line) for line in lines)

    def _emit(self, answer: Reply, *, error: bool | None = None) -> None:
        """Write a reply; an error reply (or ``error=True``) counts toward max_errors."""
        self._write(answer)
        if answer.code >= 400 if error is None else error:
            self.errors += 1
            if self.errors >= self.limits.max_errors and self.state is not State.CLOSED:
                self.close_with(reply(421, "4.7.0", f"{self.hostname} Error: too many errors"))

    def _reject(self, command: str, answer: Reply, *, error: bool = True) -> None:
        self._ready.append(CommandRejected(command=command, reply=answer))
        self._emit(answer, error=error)

    def _junk_reply(self, answer: Reply) -> None:
        """NOOP, VRFY, RSET: answered, and past the junk limit counted as errors."""
        self._junk += 1
        self._emit(answer, error=self._junk > self.limits.junk_command_limit)

    def _after_auth_reply(self, code: int) -> None:
        if code == 334:
            self.state = State.AUTH
            return
        self.state = State.GREETED
        self._masking = code != 235
        if code == 235:
            self.authenticated = True

    # -- command mode ----------------------------------------------------------------

    def _read_command(self) -> bool:
        """Handle one command line; False when no complete line is buffered."""
        buf = self._in
        end = buf.find(b"\n")
        limit = _MAX_AUTH_LINE if self.state is State.AUTH else self.limits.max_command_line
        if bytes(buf[:5]).upper() in (b"MAIL ", b"RCPT "):
            # RFC 1869 4.1.2: each parameter an extension adds lengthens MAIL and RCPT; SIZE,
            # ENVID, RET, AUTH=, NOTIFY and ORCPT together stay within 1000 more octets.
            limit += _PARAMETER_ALLOWANCE
        if self._skipping_long_line:
            limit = self._skipping_long_line  # the limit of the line whose tail this is
        if end < 0:
            if len(buf) > limit + _PARAMETER_ALLOWANCE:
                # Keep reading to the line end so the tail is never taken for a command.
                self._skipping_long_line = limit
                buf.clear()
            return False
        line = bytes(buf[:end])
        del buf[: end + 1]
        if self._skipping_long_line or len(line.rstrip(b"\r")) + 2 > limit:
            self._skipping_long_line = 0
            if self.transcript is not None:
                self.transcript.append(("C", f"<line too long, {len(line)} octets kept>"))
            self._refuse_line(reply(500, "5.5.6", f"Error: line too long (limit {limit} octets)"))
        else:
            self._dispatch(line)
        return True

    def _refuse_line(self, answer: Reply) -> None:
        """A line refused unread; inside AUTH that fails the exchange (RFC 4954 4 and 6)."""
        command = ""
        if self.state is State.AUTH:
            self.state, self._masking, command = State.GREETED, True, "AUTH"
        self._reject(command, answer)

    def _dispatch(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw[:1] == bytes((_TELNET_IAC,)):
            raw = _drop_telnet_negotiation(raw)
        if b"\0" in raw:
            # Never dropped: an address must be the octets the client sent, or refused.
            self._refuse_octets(raw, "a NUL character", 501)
            return
        if _EDIT_BYTES.search(raw):
            raw = _erase(raw)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse_octets(raw, "octets that are not UTF-8", None)
            return
        verb, _, argument = line.strip(" \t").partition(" ")
        command = verb.upper()
        if self.state is not State.AUTH and command in _COMMANDS:
            self._masking = command == "AUTH"  # until answered 235 (_after_auth_reply)
        if self.transcript is not None:
            self.transcript.append(("C", self._shown(line, command)))
        if self.state is State.AUTH:
            self._auth_line(line)
            return
        if self.state is State.REFUSED and command != "QUIT":
            masked = self._masking and command not in _COMMANDS
            self._reject(_SECRET if masked else command[:32], _R_REFUSED)
            return
        handler = _COMMANDS.get(command)
        if handler is not None:
            handler(self, argument)
        elif command in _HTTP_VERBS:
            self._ready.append(CommandRejected(command=command, reply=_R_HTTP))
            self.close_with(_R_HTTP)
        elif not command:
            self._reject("", reply(500, "5.5.2", "Error: empty command"))
        elif self._masking:
            self._reject(_SECRET, _R_MASKED)
        else:
            shown = "".join(c if c.isprintable() else "?" for c in verb[:32])
            self._reject(
                command[:32],
                reply(500, "5.5.2", f'Command unrecognized: "{shown}" (type HELP for the list)'),
            )

    def _refuse_octets(self, raw: bytes, what: str, code: int | None) -> None:
        """A line that is no text: 501 for a command we know (``code`` or 500 for others)."""
        verb = _VERB.match(raw)
        command = verb.group(0).decode("ascii").upper() if verb else ""
        if self.transcript is not None:
            text = raw.decode("utf-8", errors="replace")
            self.transcript.append(("C", self._shown(text, command)))
        if self.state is State.AUTH:
            # No answer to the challenge: the exchange ends, as after "*" (and what follows
            # may still be SASL answers, see _masking).
            self.state, self._masking = State.GREETED, True
            self._reject("AUTH", reply(501, "5.5.2", f"Error: AUTH response has {what}"))
            return
        if command in _COMMANDS:
            self._masking = command == "AUTH"
            self._reject(command, reply(501, "5.5.2", f"Error: {command} line has {what}"))
        else:
            self._reject("", reply(code or 500, "5.5.2", f"Error: command line has {what}"))

    def _shown(self, line: str, command: str) -> str:
        """The command line as the transcript keeps it: SASL data never appears."""
        if self.state is State.AUTH:
            return "*" if line.strip() == "*" else _SECRET
        if self._masking and command and command not in _COMMANDS:
            return _SECRET
        words = line.split()
        if len(words) > 2 and words[0].upper() == "AUTH":
            return f"{words[0]} {words[1]} {_SECRET}"  # the initial response (RFC 4954 4)
        return line

    def _auth_line(self, line: str) -> None:
        if line.strip() == "*":
            # RFC 4954 section 4: the client cancels the exchange with "*".
            self.state = State.GREETED
            self._reject("AUTH", reply(501, "5.7.0", "Authentication aborted"))
            return
        self._ready.append(AuthResponse(data=line.strip()))

    def _require(self, command: str, *states: State) -> bool:
        if self.state in states:
            return True
        if self.state is State.CONNECTED:
            self._reject(command, _R_NEED_HELO)
        elif command == "MAIL":
            self._reject(command, reply(503, "5.5.1", "Error: nested MAIL command"))
        elif command in ("STARTTLS", "AUTH"):
            self._reject(command, _R_IN_TXN)
        elif self.state is State.GREETED:
            self._reject(command, _R_NEED_MAIL)
        else:
            self._reject(command, _R_NEED_RCPT)
        return False

    def _cmd_hello(self, argument: str, *, extended: bool) -> None:
        name = argument.strip(" \t")
        verb = "EHLO" if extended else "HELO"
        # A CR would end the reply line that echoes the name (the reply builder refuses
        # it); other control characters are escaped wherever the name is shown.
        if not name or " " in name or "\r" in name:
            self._reject(verb, reply(501, "5.5.4", f"Syntax: {verb} hostname"))
            return
        self._ready.append(Hello(name=name, extended=extended))

    def _cmd_ehlo(self, argument: str) -> None:
        self._cmd_hello(argument, extended=True)

    def _cmd_helo(self, argument: str) -> None:
        self._cmd_hello(argument, extended=False)

    def _cmd_mail(self, argument: str) -> None:
        if not self._require("MAIL", State.GREETED):
            return
        rest = argument.lstrip(" ")
        if rest[:5].upper() != "FROM:":
            self._reject("MAIL", reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
            return
        params = MailParams()
        try:
            path_text, params_text = split_path(rest[5:])
            params = parse_mail_params(params_text, max_size=self.limits.max_message_size)
            path = parse_path(path_text, utf8=params.smtputf8, allow_null=True)
        except ParamError as error:
            self._reject("MAIL", error.reply)
            return
        except AddressError as error:
            utf8 = params.smtputf8
            self._reject("MAIL", _address_reply(error, rest[5:], params_utf8=utf8, sender=True))
            return
        self._ready.append(MailFrom(reverse_path=path.address, params=params))

    def _cmd_rcpt(self, argument: str) -> None:
        if not self._require("RCPT", State.MAIL, State.RCPT):
            return
        assert self.transaction is not None
        rest = argument.lstrip(" ")
        if rest[:3].upper() != "TO:":
            self._reject("RCPT", reply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
            return
        utf8 = self.transaction.params.smtputf8
        try:
            path_text, params_text = split_path(rest[3:])
            params = parse_rcpt_params(params_text)
            path = parse_path(path_text, utf8=utf8, allow_null=False, allow_postmaster=True)
        except ParamError as error:
            self._reject("RCPT", error.reply)
            return
        except AddressError as error:
            self._reject("RCPT", _address_reply(error, rest[3:], params_utf8=utf8, sender=False))
            return
        if len(self.transaction.recipients) >= self.limits.max_recipients:
            # RFC 5321 4.5.3.1.10: too many recipients is a 452; the client retries the rest
            # in another transaction, so it is no error unless the client overdoes it.
            self._overshoot += 1
            self._reject(
                "RCPT",
                reply(452, "4.5.3", "Error: too many recipients"),
                error=self._overshoot > self.limits.recipient_overshoot,
            )
            return
        self._ready.append(RcptTo(forward_path=path.address, params=params))

    def _cmd_data(self, argument: str) -> None:
        if argument.strip():
            self._reject("DATA", reply(501, "5.5.4", "Syntax: DATA (no parameters)"))
            return
        if self.state is State.MAIL:
            # RFC 2920 3.1: with PIPELINING, DATA after only failed RCPTs is refused.
            self._reject("DATA", reply(554, "5.5.1", "Error: no valid recipients"))
            return
        if not self._require("DATA", State.RCPT):
            return
        assert self.transaction is not None
        if self.transaction.chunked:
            self._reject("DATA", reply(503, "5.5.1", "Error: DATA after BDAT in one transaction"))
        elif self.transaction.params.body == "BINARYMIME":
            # RFC 3030 section 3: BINARYMIME content can only be sent with BDAT.
            self._reject("DATA", reply(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT"))
        else:
            self._ready.append(DataCommand())

    def _cmd_bdat(self, argument: str) -> None:
        words = argument.split()
        if not (
            1 <= len(words) <= 2
            and words[0].isascii()  # isdigit() alone also takes "²", which int() refuses
            and words[0].isdigit()
            and len(words[0]) <= 20
        ) or (len(words) == 2 and words[1].upper() != "LAST"):
            self._reject("BDAT", reply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
            return
        size, last = int(words[0]), len(words) == 2
        refusal = None
        if self.state is State.CONNECTED:
            refusal = _R_NEED_HELO
        elif self.state is State.GREETED:
            refusal = _R_NEED_MAIL
        elif self.state is State.MAIL:
            refusal = reply(554, "5.5.1", "Error: no valid recipients")
        if refusal is None:
            assert self.transaction is not None
            if not self.transaction.chunked:
                self._start_message()
                self.transaction.chunked = True
        # RFC 3030 section 3: the chunk is read in full even when it is refused.
        self._resume = self.state
        self._chunk_left, self._chunk_last, self._chunk_refusal = size, last, refusal
        self.state = State.BDAT

    def _cmd_rset(self, argument: str) -> None:
        if argument.strip():
            self._reject("RSET", reply(501, "5.5.4", "Syntax: RSET (no parameters)"))
            return
        self.transaction = None
        if self.state is not State.CONNECTED:
            self.state = State.GREETED
        self._ready.append(Reset())
        self._junk_reply(_R_OK)

    def _cmd_noop(self, _argument: str) -> None:
        self._junk_reply(_R_OK)

    def _cmd_vrfy(self, argument: str) -> None:
        if not argument.strip():
            self._reject("VRFY", reply(501, "5.5.4", "Syntax: VRFY address"))
            return
        # RFC 5321 3.5.3: 252 says "not verified, but try": no user list ever leaks.
        self._junk_reply(_R_VRFY)

    def _cmd_expn(self, _argument: str) -> None:
        self._reject(
            "EXPN", reply(502, "5.5.1", "Error: EXPN is disabled; lists are not disclosed")
        )

    def _cmd_help(self, argument: str) -> None:
        answer = help_reply(argument.strip())
        if answer.code >= 400:
            self._reject("HELP", answer)
        else:
            self._emit(answer)

    def _cmd_quit(self, _argument: str) -> None:
        self.close_with(reply(221, "2.0.0", f"{self.hostname} closing connection"))

    def _cmd_starttls(self, argument: str) -> None:
        if not self.tls_available:
            self._reject("STARTTLS", reply(502, "5.5.1", "Error: command not implemented"))
        elif argument.strip():
            self._reject("STARTTLS", reply(501, "5.5.4", "Syntax: STARTTLS (no parameters)"))
        elif self.tls_active:
            self._reject("STARTTLS", reply(503, "5.5.1", "Error: TLS already active"))
        elif self._require("STARTTLS", State.GREETED):
            self._ready.append(StartTls())

    def _cmd_auth(self, argument: str) -> None:
        words = argument.split()
        if not self.auth_mechanisms and self.auth_needs_tls and not self.tls_active:
            self._reject("AUTH", _R_ENCRYPTION_REQUIRED)
        elif not self.auth_mechanisms:
            self._reject("AUTH", reply(502, "5.5.1", "Error: authentication not enabled"))
        elif self.authenticated:
            self._reject("AUTH", reply(503, "5.5.1", "Error: already authenticated"))
        elif not self._require("AUTH", State.GREETED):
            return
        elif not 1 <= len(words) <= 2:
            self._reject("AUTH", reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"))
        elif words[0].upper() not in self.auth_mechanisms:
            self._reject("AUTH", reply(504, "5.5.4", "Unrecognized authentication type"))
        else:
            initial = words[1] if len(words) == 2 else None
            self._ready.append(AuthStart(mechanism=words[0].upper(), initial_response=initial))

    # -- message octets ----------------------------------------------------------------

    def _start_message(self) -> None:
        self._line_start = True
        self._content = ContentCheck(self.limits)

    def _read_data(self) -> bool:
        """Consume DATA octets; False when more bytes are needed."""
        buf = self._in
        if self._line_start and buf[:3] == b".\r\n":
            end = 0
        else:
            found = buf.find(b"\r\n.\r\n")
            end = found + 2 if found >= 0 else -1
        if end >= 0:
            if end:
                self._take(bytes(buf[:end]), ends_line=True)
            del buf[: end + 3]
            self._deliver(self._content.finish())
            self._ready.append(MessageEnd(problem=self._content.problem))
            return True
        # Only complete lines go out, so dot-unstuffing never straddles two reads.
        cut = buf.rfind(b"\r\n") + 2
        if cut >= 2:
            self._take(bytes(buf[:cut]), ends_line=True)
        elif len(buf) > self.limits.max_text_line:
            # A line with no end in sight: pass it on (or count it) without waiting.
            cut = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
            self._take(bytes(buf[:cut]), ends_line=False)
        else:
            return False
        del buf[:cut]
        return True

    def _take(self, segment: bytes, *, ends_line: bool) -> None:
        content = self._content
        content.received(len(segment))
        # RFC 5321 4.5.2: a line's leading dot is removed.
        if self._line_start and segment[:1] == b".":
            segment = segment[1:]
        self._deliver(content.feed(segment.replace(b"\r\n.", b"\r\n")))
        self._line_start = ends_line

    def _deliver(self, data: bytes) -> None:
        if self._content.problem is None and data:
            self._ready.append(DataChunk(data=data))

    def _read_chunk(self) -> bool:
        buf = self._in
        take = min(len(buf), self._chunk_left)
        if take:
            chunk = bytes(buf[:take])
            del buf[:take]
            self._chunk_left -= take
            if self._chunk_refusal is None:
                # BDAT is length-framed, but its content meets the same rules as DATA's.
                self._content.received(take)
                self._deliver(self._content.feed(chunk))
        if self._chunk_left:
            return take > 0
        self._end_chunk()
        return True

    def _end_chunk(self) -> None:
        self.state = self._resume
        content = self._content
        if self._chunk_refusal is not None:
            self._reject("BDAT", self._chunk_refusal)
        elif self._chunk_last:
            self._deliver(content.finish())
            self.state = State.BDAT  # until the caller answers MessageEnd
            self._ready.append(MessageEnd(problem=content.problem))
        elif content.problem is not None:
            self.transaction, self.state = None, State.GREETED
            self._reject("BDAT", content.problem)
        else:
            self.state = State.RCPT
            self._emit(reply(250, "2.0.0", f"Ok: {content.size} octets received"))


def _needs_reply(event: Event) -> bool:
    return not isinstance(event, DataChunk | Reset | CommandRejected)


def _address_reply(error: AddressError, text: str, *, params_utf8: bool, sender: bool) -> Reply:
    if not params_utf8 and not text.isascii():
        # RFC 6531 3.5: a non-ASCII address needs SMTPUTF8 on MAIL.
        return reply(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8")
    if sender:
        return reply(501, "5.1.7", f"Bad sender address syntax ({error})")
    return reply(501, "5.1.3", f"Bad recipient address syntax ({error})")


def _drop_telnet_negotiation(line: bytes) -> bytes:
    """Drop the telnet commands (IAC ...) that open a line.

    A telnet client negotiates before its user types, and this server never negotiates,
    so IAC belongs only there; anywhere else it is an octet that is not UTF-8, refused.
    """
    i, n = 0, len(line)
    while i < n and line[i] == _TELNET_IAC:
        verb = line[i + 1] if i + 1 < n else None
        if verb == _TELNET_SB:
            end = line.find(bytes((_TELNET_IAC, _TELNET_SE)), i + 2)
            i = n if end < 0 else end + 2
        else:
            i += 3 if verb in _TELNET_OPTION_VERBS else 2
    return line[i:]


def _erase(line: bytes) -> bytes:
    """Apply what a terminal would: backspace and DEL erase the character before them."""
    out = bytearray()
    for byte in line:
        if byte in (0x08, 0x7F):
            # Erase one character, all of its UTF-8 continuation bytes included.
            while out and out[-1] & 0xC0 == 0x80:
                out.pop()
            if out:
                out.pop()
        else:
            out.append(byte)
    return bytes(out)


_R_HTTP = reply(221, "2.7.0", "Error: this is an SMTP server, not a web server")

_COMMANDS = {
    "EHLO": ServerConnection._cmd_ehlo,
    "HELO": ServerConnection._cmd_helo,
    "MAIL": ServerConnection._cmd_mail,
    "RCPT": ServerConnection._cmd_rcpt,
    "DATA": ServerConnection._cmd_data,
    "BDAT": ServerConnection._cmd_bdat,
    "RSET": ServerConnection._cmd_rset,
    "NOOP": ServerConnection._cmd_noop,
    "VRFY": ServerConnection._cmd_vrfy,
    "EXPN": ServerConnection._cmd_expn,
    "HELP": ServerConnection._cmd_help,
    "QUIT": ServerConnection._cmd_quit,
    "STARTTLS": ServerConnection._cmd_starttls,
    "AUTH": ServerConnection._cmd_auth,
}
