"""SMTP replies and the reply codes Hato uses, each named once beside its RFC."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "R_NOT_IMPLEMENTED",
    "Reply",
    "bad_recipient_syntax",
    "bad_sender_syntax",
    "parse_reply",
    "reply",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a code, an optional enhanced status code, and its text lines.

    RFC 5321 4.2: every line of a multi-line reply carries the same code; RFC 2034
    section 4: when enhanced codes are in use, each line carries the enhanced code too.
    """

    code: int
    enhanced: str | None
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        # RFC 3463 section 2: class.subject.detail, and the class matches the code.
        if self.enhanced is not None and (
            self.enhanced[0] != str(self.code)[0] or self.enhanced.count(".") != 2
        ):
            raise ValueError(f"enhanced code {self.enhanced!r} does not fit {self.code}")
        if not self.lines:
            raise ValueError("a reply has at least one line")
        for line in self.lines:
            if "\r" in line or "\n" in line:
                raise ValueError("reply text must not contain CR or LF")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def wire_lines(self) -> list[str]:
        """The lines as sent, code (and enhanced code) first, without line ends."""
        prefix = f"{self.code} {self.enhanced} " if self.enhanced else f"{self.code} "
        dash = f"{self.code}-{self.enhanced} " if self.enhanced else f"{self.code}-"
        last = len(self.lines) - 1
        return [(prefix if i == last else dash) + line for i, line in enumerate(self.lines)]

    def to_bytes(self) -> bytes:
        return ("\r\n".join(self.wire_lines()) + "\r\n").encode("utf-8")

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8").rstrip("\r\n").replace("\r\n", " / ")


_REPLY_LINE = re.compile(r"([2-5][0-9][0-9])(?: ([2-5]\.[0-9]{1,3}\.[0-9]{1,3}))?(?: (.*))?")


def parse_reply(text: str) -> Reply:
    """A one-line reply as an administrator writes it: ``"554 5.7.1 Go away"``.

    The enhanced code is optional; without text, the line is the code alone. ValueError says
    what is wrong (for configuration files, which quote it under their key).
    """
    found = _REPLY_LINE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f'expected a reply such as "554 5.7.1 Access denied", got {text!r}')
    code, enhanced, line = found.groups()
    return Reply(int(code), enhanced, ((line or "").strip() or "",))


def reply(code: int, enhanced: str | None, *lines: str) -> Reply:
    """Build a reply: ``reply(250, "2.1.0", "Ok")``."""
    return Reply(code, enhanced, lines)


# -- the engine's replies, each named once beside the rule it stands for ---------------
# The engine answers syntax, sequence and limit errors itself (ServerConnection); these
# are its words, so a rule changes in one place and the golden dialogs pin the wire text.

R_OK = reply(250, "2.0.0", "Ok")  # RSET, NOOP (RFC 5321 4.1.1.5, 4.1.1.9)
# RFC 5321 3.5.3: 252 says "not verified, but try": no user list ever leaks.
R_VRFY = reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")


def closing(hostname: str) -> Reply:
    """RFC 5321 4.1.1.10: QUIT is answered 221, then the channel closes."""
    return reply(221, "2.0.0", f"{hostname} closing connection")


def chunk_received(size: int) -> Reply:
    """RFC 3030 2: each BDAT chunk but the last is answered 250 once its octets are in."""
    return reply(250, "2.0.0", f"Ok: {size} octets received")


# Sequence (RFC 5321 3.3 and 4.1.4: a command out of order gets 503).
R_NEED_HELO = reply(503, "5.5.1", "Error: send HELO/EHLO first")
R_NEED_MAIL = reply(503, "5.5.1", "Error: need MAIL command")
R_NEED_RCPT = reply(503, "5.5.1", "Error: need RCPT command")
# RFC 5321 4.1.4: no MAIL inside an open transaction; nor AUTH (RFC 4954 4), nor
# STARTTLS, which starts the session over (RFC 3207 4.2).
R_NESTED_MAIL = reply(503, "5.5.1", "Error: nested MAIL command")
R_IN_TXN = reply(503, "5.5.1", "Error: MAIL transaction in progress")
# RFC 5321 4.1.1.4 and RFC 2920 3.1: DATA (or BDAT) after only refused RCPTs.
R_NO_VALID_RECIPIENTS = reply(554, "5.5.1", "Error: no valid recipients")
# RFC 3030 2: DATA and BDAT are not mixed in one transaction.
R_DATA_AFTER_BDAT = reply(503, "5.5.1", "Error: DATA after BDAT in one transaction")
# RFC 3030 3: BINARYMIME content can only be sent with BDAT.
R_BINARYMIME_NEEDS_BDAT = reply(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT")
# RFC 3207 4: no STARTTLS inside TLS.
R_TLS_ACTIVE = reply(503, "5.5.1", "Error: TLS already active")
# RFC 4954 4: after a successful AUTH, a second one gets 503.
R_AUTHENTICATED = reply(503, "5.5.1", "Error: already authenticated")
# RFC 5321 3.1: after a 554 greeting, anything but QUIT gets 503.
R_REFUSED = reply(503, "5.5.1", "Error: this server refused the connection; send QUIT")

# Commands not served (RFC 5321 4.2.4: 502 for a command not implemented).
R_NOT_IMPLEMENTED = reply(502, "5.5.1", "Error: command not implemented")
# RFC 5321 3.5.3 and 7.3: EXPN may be disabled; lists are private.
R_EXPN_DISABLED = reply(502, "5.5.1", "Error: EXPN is disabled; lists are not disclosed")
R_AUTH_NOT_ENABLED = reply(502, "5.5.1", "Error: authentication not enabled")
# Postfix's smtpd_forbidden_commands: a web client talking to port 25 is shown the door.
R_HTTP = reply(221, "2.7.0", "Error: this is an SMTP server, not a web server")


# Syntax (RFC 5321 4.2.2: 500 for a line that is no command, 501 for bad arguments).
def syntax_error(usage: str) -> Reply:
    """501 with the command's usage: ``syntax_error("MAIL FROM:<address>")``."""
    return reply(501, "5.5.4", f"Syntax: {usage}")


def no_parameters(verb: str) -> Reply:
    """RFC 5321 4.1.1.4 and 4.1.1.5: DATA and RSET take none; nor STARTTLS (RFC 3207 4)."""
    return syntax_error(f"{verb} (no parameters)")


R_EMPTY_COMMAND = reply(500, "5.5.2", "Error: empty command")


def unrecognized(shown: str) -> Reply:
    """An unknown verb, named (made printable) so the person at the prompt sees it."""
    return reply(500, "5.5.2", f'Command unrecognized: "{shown}" (type HELP for the list)')


# What an unknown line gets while the client may be sending SASL answers (see
# ServerConnection._masking): the line is not named.
R_MASKED = reply(500, "5.5.2", "Error: command unrecognized (not shown: it may be an AUTH answer)")


def line_too_long(limit: int) -> Reply:
    """RFC 5321 4.5.3.1.4: a command line longer than the limit gets 500."""
    return reply(500, "5.5.6", f"Error: line too long (limit {limit} octets)")


def unreadable(code: int, subject: str, what: str) -> Reply:
    """A line that is no text (a NUL, octets not UTF-8): ``subject`` says whose line."""
    return reply(code, "5.5.2", f"Error: {subject} has {what}")


# Addresses (RFC 3463 X.1.7 and X.1.3: bad sender and bad destination address syntax).
def bad_sender_syntax(detail: str) -> Reply:
    return reply(501, "5.1.7", f"Bad sender address syntax ({detail})")


def bad_recipient_syntax(detail: str) -> Reply:
    return reply(501, "5.1.3", f"Bad recipient address syntax ({detail})")


# RFC 6531 3.5: a non-ASCII address needs SMTPUTF8 on MAIL.
R_NON_ASCII_NEEDS_SMTPUTF8 = reply(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8")

# Limits.
# RFC 5321 4.5.3.1.10: too many recipients is a 452; the client sends the rest later.
R_TOO_MANY_RECIPIENTS = reply(452, "4.5.3", "Error: too many recipients")


def too_many_errors(hostname: str) -> Reply:
    """Limits.max_errors reached (Postfix's smtpd_hard_error_limit); the session ends."""
    return reply(421, "4.7.0", f"{hostname} Error: too many errors")


# AUTH (RFC 4954).
# RFC 4954 4: the client cancels the exchange with "*".
R_AUTH_ABORTED = reply(501, "5.7.0", "Authentication aborted")
# RFC 4954 4: a mechanism the server does not offer gets 504.
R_AUTH_UNKNOWN_MECHANISM = reply(504, "5.5.4", "Unrecognized authentication type")
# RFC 4954 6: the mechanisms exist, but only inside TLS, so they are not advertised yet.
R_ENCRYPTION_REQUIRED = reply(
    538,
    "5.7.11",
    "Encryption required for requested authentication mechanism (issue STARTTLS first)",
)

# ESMTP parameters (RFC 1869 / RFC 5321 4.1.1.11: unrecognised or malformed ones get 555).


def bad_parameter(detail: str) -> Reply:
    return reply(555, "5.5.4", detail)


# RFC 1870 section 6: a declared size over the fixed limit gets 552.
R_SIZE_OVER_LIMIT = reply(552, "5.3.4", "Message size exceeds fixed limit")

# Message content (ContentCheck), by precedence: size, bare CR/LF, long line.
# RFC 1870 section 6 and RFC 3463 X.3.4: the octets sent exceed the advertised SIZE.
R_TOO_BIG = reply(552, "5.3.4", "Error: message exceeds fixed maximum size")
# RFC 5321 2.3.8: CR and LF only as a pair; a lone one is how smuggling starts.
R_BARE_NEWLINE = reply(
    550, "5.5.2", "Error: bare <CR> or <LF> in message data; lines must end with <CR><LF>"
)


def text_line_too_long(longest: int) -> Reply:
    """RFC 5321 4.5.3.1.6: a text line is at most 998 octets before its CRLF."""
    return reply(550, "5.6.0", f"Error: message has a line over {longest} octets")


# -- the client's local refusals: the next hop cannot take the message ------------------


def over_next_hop_size(size: int, limit: int) -> Reply:
    """RFC 1870 section 6 and RFC 3463 X.3.4: too big for the next hop, for good."""
    return reply(
        552, "5.3.4", f"Message size exceeds the limit of the next hop ({size} > {limit} octets)"
    )


# RFC 6531 3.5: a message that needs SMTPUTF8 is not sent to a server without it.
R_NEEDS_SMTPUTF8 = reply(
    554, "5.6.7", "Message needs SMTPUTF8, which the next hop does not support"
)
# RFC 6152 section 3: 8-bit data only with BODY=8BITMIME; X.6.3 conversion not supported.
R_NEEDS_8BITMIME = reply(
    554, "5.6.3", "Message has 8-bit data and the next hop does not support 8BITMIME"
)
