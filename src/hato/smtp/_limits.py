"""The engine's limits, each named once with the rule behind it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    # Advertised as SIZE (RFC 1870); declared or actual size over it gets 552 5.3.4.
    max_message_size: int = 64 * 1024 * 1024
    # RFC 5321 4.5.3.1.4: a command line is at most 512 octets, CRLF included.
    max_command_line: int = 512
    # RFC 5322 2.1.1 / RFC 5321 4.5.3.1.6: 998 octets of text plus CRLF.
    max_text_line: int = 1000
    # RFC 5321 4.5.3.1.8: at least 100 recipients must be buffered.
    max_recipients: int = 100
    # Error replies in one session before "421 4.7.0" (Postfix's smtpd_hard_error_limit).
    max_errors: int = 20
    # RCPTs past max_recipients answered 452 without counting as errors, until a message is
    # accepted (Postfix's smtpd_recipient_overshoot_limit): a client sending a long list is
    # not cut off, one that loops on refused RCPTs still meets max_errors.
    recipient_overshoot: int = 1000
    # NOOP, VRFY, RSET a session may send before each counts as an error, until a message is
    # accepted (Postfix's smtpd_junk_command_limit): commands that cost us and move no mail.
    junk_command_limit: int = 100
    # "reject" refuses a message with a bare CR or LF (550 5.5.2); "normalize" makes it CRLF.
    bare_newline: str = "reject"

    def __post_init__(self) -> None:
        # Below these the engine could not make progress (a line must hold at least CRLF).
        if self.max_command_line < 16 or self.max_text_line < 3:
            raise ValueError("max_command_line must be >= 16 and max_text_line >= 3")
        if min(self.max_message_size, self.max_recipients, self.max_errors) < 1:
            raise ValueError("max_message_size, max_recipients and max_errors must be >= 1")
        if min(self.recipient_overshoot, self.junk_command_limit) < 0:
            raise ValueError("recipient_overshoot and junk_command_limit must be >= 0")
        if self.bare_newline not in ("reject", "normalize"):
            raise ValueError(f"bare_newline must be reject or normalize: {self.bare_newline!r}")
