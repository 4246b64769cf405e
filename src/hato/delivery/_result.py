"""Per-recipient delivery results, classified where the failure happens."""

from __future__ import annotations

import enum
import errno
import re
from dataclasses import dataclass

from hato.delivery._classify import Reason

__all__ = [
    "BAD_MAILBOX",
    "MAILBOX_FULL",
    "MAIL_LOOP",
    "MESSAGE_TOO_BIG",
    "OK",
    "SYSTEM_ERROR",
    "SYSTEM_FULL",
    "Result",
    "Status",
    "os_error_result",
]

# RFC 3463 enhanced status codes the agents answer with (class.subject.detail).
OK = "2.0.0"  # 2.0.0: success, nothing more to say
MAILBOX_FULL = "4.2.2"  # X.2.2 Mailbox full (EDQUOT: the mailbox's own quota)
SYSTEM_ERROR = "4.3.0"  # X.3.0 Other or undefined mail system status
SYSTEM_FULL = "4.3.1"  # X.3.1 Mail system full (ENOSPC: the whole file system)
MESSAGE_TOO_BIG = "4.3.4"  # X.3.4 Message too big for system (EFBIG)
BAD_MAILBOX = "5.1.3"  # X.1.3 Bad destination mailbox address syntax
MAIL_LOOP = "5.4.6"  # X.4.6 Routing loop detected

_ENHANCED = re.compile(r"([245])\.(?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})")


class Status(enum.Enum):
    """What happened to one recipient, and so what the queue does next."""

    DELIVERED = "delivered"  # done: record it, never try again
    DEFERRED = "deferred"  # transient: keep it queued and retry later
    FAILED = "failed"  # permanent: give up and report to the sender

    @property
    def code_classes(self) -> str:
        """The first digits its enhanced status code may have (RFC 3463 section 3.1).

        FAILED may carry a 4.X.X code: a transient failure that became final, such as
        4.4.7 when a message expires in the queue (RFC 3464 reports keep the last status).
        """
        return {"delivered": "2", "deferred": "4", "failed": "45"}[self.value]


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One recipient's outcome: a status, its RFC 3463 code, and plain words for humans.

    ``detail`` ends up in logs and delivery status notifications, so it is one line and
    names the cause ("No space left on device", "mail loop: ...") rather than a traceback.
    """

    status: Status
    enhanced: str
    detail: str
    # Why it was not delivered, in one of a few classes (None when delivered).
    reason: Reason | None = None

    def __post_init__(self) -> None:
        match = _ENHANCED.fullmatch(self.enhanced)
        if match is None:
            raise ValueError(f"not an RFC 3463 status code: {self.enhanced!r}")
        if match.group(1) not in self.status.code_classes:
            classes = " or ".join(f"{c}.X.X" for c in self.status.code_classes)
            raise ValueError(f"{self.status.name} needs a {classes} code, not {self.enhanced}")
        if any(char in self.detail for char in "\r\n\0"):
            raise ValueError("detail must be a single line")

    @classmethod
    def delivered(cls, detail: str) -> Result:
        return cls(status=Status.DELIVERED, enhanced=OK, detail=detail)

    @classmethod
    def deferred(cls, enhanced: str, detail: str, reason: Reason = Reason.OTHER) -> Result:
        return cls(status=Status.DEFERRED, enhanced=enhanced, detail=detail, reason=reason)

    @classmethod
    def failed(cls, enhanced: str, detail: str, reason: Reason = Reason.OTHER) -> Result:
        return cls(status=Status.FAILED, enhanced=enhanced, detail=detail, reason=reason)


# Errors of the local system are ours to fix, never the sender's: all are transient, and
# the code tells the sender's postmaster which kind of trouble it is.
_ERRNO_CODES = {
    errno.EDQUOT: MAILBOX_FULL,
    errno.ENOSPC: SYSTEM_FULL,
    errno.EFBIG: MESSAGE_TOO_BIG,
}


def os_error_result(exc: OSError, doing: str) -> Result:
    """A DEFERRED result for a failed system call: ``doing`` says what we were trying."""
    enhanced = _ERRNO_CODES.get(exc.errno or 0, SYSTEM_ERROR)
    reason = exc.strerror or str(exc) or type(exc).__name__
    why = Reason.MAILBOX_FULL if enhanced == MAILBOX_FULL else Reason.OTHER
    return Result.deferred(enhanced, " ".join(f"{doing}: {reason}".split()), why)
