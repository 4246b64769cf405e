"""SMTP replies and the reply codes Hato uses, each named once beside its RFC."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Reply", "parse_reply", "reply"]


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
