"""Message content as it streams: one set of rules, however the octets arrive.

DATA (after dot-unstuffing), BDAT chunks and any later way in hand their octets to one
:class:`ContentCheck`, cut wherever the network cut them; it applies
``Limits.bare_newline`` (refuse with 550 5.5.2, or make CRLF), the longest text line and
the size limit, and returns what may be stored. :class:`LineEnds` is the part that makes
every line end CRLF; the client uses it too, so nothing it sends has a bare CR or LF.
Every step costs time in proportion to the octets fed, never to what came before.
"""

from __future__ import annotations

import re

from ._limits import Limits
from ._reply import Reply, reply

__all__ = ["R_BARE_NEWLINE", "R_TOO_BIG", "ContentCheck", "LineEnds"]

_NEWLINE = re.compile(rb"\r\n|\r|\n")
R_BARE_NEWLINE = reply(
    550, "5.5.2", "Error: bare <CR> or <LF> in message data; lines must end with <CR><LF>"
)
R_TOO_BIG = reply(552, "5.3.4", "Error: message exceeds fixed maximum size")
# Message problems by precedence: size (552), bare CR/LF (550 5.5.2), long line (550 5.6.0).
_PROBLEM_ORDER = ("5.3.4", "5.5.2", "5.6.0")


class LineEnds:
    """Makes every CR or LF outside a CRLF pair a CRLF, however the stream is cut.

    A CR at the end of a piece is held back until the next piece says whether an LF
    follows it; :meth:`finish` releases it at the end of the stream.
    """

    def __init__(self) -> None:
        self.bare = 0  # pieces in which a bare CR or LF was found
        self._held_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._held_cr:
            data, self._held_cr = b"\r" + data, False
        if data.endswith(b"\r"):
            data, self._held_cr = data[:-1], True
        return self._fix(data)

    def finish(self) -> bytes:
        """What is still held (a CR that no LF followed, as CRLF), at the end of the stream."""
        if not self._held_cr:
            return b""
        self._held_cr = False
        return self._fix(b"\r")

    def _fix(self, data: bytes) -> bytes:
        crlf = data.count(b"\r\n")
        if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
            return data
        self.bare += 1
        return _NEWLINE.sub(b"\r\n", data)


class ContentCheck:
    """The rules for one message's content; ``problem`` is the refusal it has earned.

    Checking goes on past the first problem and the kind first in the precedence wins,
    so the refusal never depends on how the peer's octets were split into reads.
    """

    def __init__(self, limits: Limits) -> None:
        self._normalize = limits.bare_newline == "normalize"
        self._longest = limits.max_text_line - 2
        self._max_size = limits.max_message_size
        self._line_ends = LineEnds()
        self._partial = 0  # octets of the line whose end has not come yet
        self.size = 0
        self.problem: Reply | None = None

    def received(self, octets: int) -> None:
        """Octets of the message as sent (before dot-unstuffing), for the size limit."""
        self.size += octets
        if self.size > self._max_size:
            self.refuse(R_TOO_BIG)

    def feed(self, data: bytes) -> bytes:
        """Check the next octets; return them as they may be stored."""
        return self._check(self._line_ends.feed(data))

    def finish(self) -> bytes:
        """The end of the message: octets still held back, checked."""
        return self._check(self._line_ends.finish())

    def refuse(self, problem: Reply) -> None:
        rank = _PROBLEM_ORDER.index
        if self.problem is None or rank(problem.enhanced) < rank(self.problem.enhanced):
            self.problem = problem

    def _check(self, data: bytes) -> bytes:
        bare = self._line_ends.bare
        if bare and not self._normalize:
            # RFC 5321 2.3.8: CR and LF only as a pair; a lone one is how smuggling starts.
            self.refuse(R_BARE_NEWLINE)
        first = data.find(b"\r\n")
        if first < 0:
            # Only the length of an unfinished line is kept, so a long one costs no more
            # per piece than a short one.
            self._partial += len(data)
            longest = self._partial
        else:
            last = data.rfind(b"\r\n") + 2
            longest = self._partial + first
            if last - 2 > first:
                longest = max(longest, *map(len, data[first + 2 : last - 2].split(b"\r\n")))
            self._partial = len(data) - last
            longest = max(longest, self._partial)
        if longest > self._longest:
            self.refuse(
                reply(550, "5.6.0", f"Error: message has a line over {self._longest} octets")
            )
        return data
