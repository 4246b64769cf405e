"""The spool's vocabulary: envelope, recipient, queued message, queue ID, reports, error."""

import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = [
    "QUEUED",
    "Envelope",
    "QueueIdSource",
    "QueuedMessage",
    "Recipient",
    "RecoveryReport",
    "SpoolError",
    "SpoolStats",
    "is_queue_id",
]

# Per-recipient delivery state. Only "queued" exists at intake; the queue layer adds the rest.
QUEUED = "queued"

# RFC 3461 §4.1: NOTIFY is either NEVER alone or a list of SUCCESS, FAILURE and DELAY.
_NOTIFY_NEVER = "NEVER"
_NOTIFY_EVENTS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# RFC 3461 §4.3: RET=FULL or RET=HDRS.
_RET_VALUES = frozenset({"FULL", "HDRS"})
# RFC 6152 (8BITMIME) and RFC 3030 (BINARYMIME): the BODY= values.
_BODY_VALUES = frozenset({"7BIT", "8BITMIME", "BINARYMIME"})

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Arrival time in microseconds, base 36: 36**10 us is about 115 years, so ten digits last
# until 2084 and IDs sort by arrival as plain strings.
_TIME_DIGITS = 10
# 36**4 is about 1.7 million: keeps apart IDs that two processes draw in the same microsecond.
_RANDOM_DIGITS = 4
_QUEUE_ID_RE = re.compile(r"[0-9A-Z]{12,16}")
# A Maildir++ folder name that is safe as a path component (no dots: no nesting, no "..").
_FOLDER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SpoolError(Exception):
    """The spool could not keep its promise (I/O, database, closed spool).

    Transient by nature: the SMTP session answers ``451 4.3.0`` and the client retries.
    """


def is_queue_id(text: str) -> bool:
    """True when ``text`` has the shape of a queue ID (so it is safe as a file name)."""
    return _QUEUE_ID_RE.fullmatch(text) is not None


def _base36(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        digits.append(_ALPHABET[digit])
    if value:
        raise OverflowError(f"does not fit in {width} base-36 digits")
    return "".join(reversed(digits))


class QueueIdSource:
    """Allocates queue IDs: 10 base-36 digits of arrival time in microseconds, then 4 random.

    IDs from one source strictly increase, even when the wall clock steps back, so they sort
    by arrival. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> str:
        with self._lock:
            now = max(time.time_ns() // 1000, self._last + 1)
            self._last = now
        noise = secrets.randbelow(36**_RANDOM_DIGITS)
        return _base36(now, _TIME_DIGITS) + _base36(noise, _RANDOM_DIGITS)


_REQUIRED: Any = object()


def _take(data: Mapping[str, Any], key: str, kinds: tuple[type, ...], default: Any) -> Any:
    """Read ``key`` from a JSON-like mapping, checking its type; bool never passes as a number."""
    if key not in data:
        if default is _REQUIRED:
            raise ValueError(f"missing {key!r}")
        return default
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ValueError(f"{key!r} must be {names}, not {type(value).__name__}")
    return value


def _check_keys(data: Mapping[str, Any], known: frozenset[str], what: str) -> None:
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(sorted(unknown))}")


_OPT_STR = (str, type(None))


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    """One forward-path with its DSN parameters (RFC 3461)."""

    address: str  # forward-path without <>, as received
    notify: tuple[str, ...] = ()  # () = not given; ("NEVER",) or a subset of SUCCESS/FAILURE/DELAY
    orcpt: str | None = None  # "addr-type;address", xtext decoded, e.g. "rfc822;u@example.com"

    def __post_init__(self) -> None:
        # RFC 3461 §4.1: "NEVER" must appear alone; otherwise only SUCCESS, FAILURE, DELAY.
        if self.notify != (_NOTIFY_NEVER,) and not _NOTIFY_EVENTS.issuperset(self.notify):
            raise ValueError(f"invalid NOTIFY {','.join(self.notify)!r}")
        # RFC 3461 §4.2: orcpt-parameter = "ORCPT=" addr-type ";" xtext
        if self.orcpt is not None and ";" not in self.orcpt:
            raise ValueError(f"ORCPT {self.orcpt!r} lacks an addr-type")

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "notify": list(self.notify), "orcpt": self.orcpt}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recipient":
        _check_keys(data, _RECIPIENT_KEYS, "recipient")
        notify = _take(data, "notify", (list, tuple), ())
        if not all(isinstance(n, str) for n in notify):
            raise ValueError("'notify' must be a list of strings")
        return cls(
            address=_take(data, "address", (str,), _REQUIRED),
            notify=tuple(notify),
            orcpt=_take(data, "orcpt", _OPT_STR, None),
        )


_RECIPIENT_KEYS = frozenset({"address", "notify", "orcpt"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """Everything the SMTP transaction said about a message, besides its bytes."""

    reverse_path: str  # "" = null reverse-path <>
    recipients: tuple[Recipient, ...]
    envid: str | None = None  # decoded from xtext
    ret: str | None = None  # "FULL" | "HDRS" | None
    body: str | None = None  # "7BIT" | "8BITMIME" | "BINARYMIME" | None
    smtputf8: bool = False
    client_ip: str = ""
    client_name: str | None = None  # reverse DNS name when known
    helo: str = ""
    protocol: str = "SMTP"  # SMTP / ESMTP / ESMTPS / ESMTPA / ESMTPSA (RFC 3848)
    tls: str | None = None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
    auth: str | None = None  # authenticated user name
    arrival: float = 0.0  # unix time
    session_id: str = ""
    # The Maildir++ folder local copies go to ("" the inbox): "Junk" for a message a
    # filter quarantined.
    folder: str = ""

    def __post_init__(self) -> None:
        # RFC 5321 §3.3: a transaction needs at least one successful RCPT before DATA.
        if not self.recipients:
            raise ValueError("an envelope needs at least one recipient")
        if self.ret is not None and self.ret not in _RET_VALUES:
            raise ValueError(f"invalid RET {self.ret!r}")
        if self.body is not None and self.body not in _BODY_VALUES:
            raise ValueError(f"invalid BODY {self.body!r}")
        if self.folder and not _FOLDER_RE.fullmatch(self.folder):
            raise ValueError(f"invalid folder name {self.folder!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict; ``from_dict`` reverses it."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _ENVELOPE_SCALARS}
        data["recipients"] = [r.to_dict() for r in self.recipients]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Envelope":
        _check_keys(data, _ENVELOPE_KEYS, "envelope")
        recipients = _take(data, "recipients", (list, tuple), _REQUIRED)
        if not all(isinstance(r, Mapping) for r in recipients):
            raise ValueError("'recipients' must be a list of objects")
        return cls(
            reverse_path=_take(data, "reverse_path", (str,), _REQUIRED),
            recipients=tuple(Recipient.from_dict(r) for r in recipients),
            envid=_take(data, "envid", _OPT_STR, None),
            ret=_take(data, "ret", _OPT_STR, None),
            body=_take(data, "body", _OPT_STR, None),
            smtputf8=_take(data, "smtputf8", (bool,), False),
            client_ip=_take(data, "client_ip", (str,), ""),
            client_name=_take(data, "client_name", _OPT_STR, None),
            helo=_take(data, "helo", (str,), ""),
            protocol=_take(data, "protocol", (str,), "SMTP"),
            tls=_take(data, "tls", _OPT_STR, None),
            auth=_take(data, "auth", _OPT_STR, None),
            arrival=float(_take(data, "arrival", (int, float), 0.0)),
            session_id=_take(data, "session_id", (str,), ""),
            folder=_take(data, "folder", (str,), ""),
        )


_ENVELOPE_KEYS = frozenset(f.name for f in fields(Envelope))
_ENVELOPE_SCALARS = tuple(f.name for f in fields(Envelope) if f.name != "recipients")


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedMessage:
    """A message the spool holds: its envelope, size, file, and one state per recipient.

    ``states[i]`` belongs to ``envelope.recipients[i]``; at intake every state is ``QUEUED``.
    """

    queue_id: str
    envelope: Envelope
    size: int
    path: Path
    states: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    """What ``Spool.open()`` found on disk."""

    queued: int  # messages whose row and file are both intact
    orphans_removed: tuple[str, ...] = ()  # files without a row: never acknowledged, deleted
    broken: tuple[str, ...] = ()  # rows whose file is missing or of the wrong size; kept


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolStats:
    """Committer counters since the Spool was created: cheap to read, for benchmarks."""

    batches: int  # group commits made durable (one syncfs, or one WAL fsync, each)
    messages: int  # messages committed
    failed: int  # commits that ended in SpoolError
    largest_batch: int

    @property
    def messages_per_batch(self) -> float:
        return self.messages / self.batches if self.batches else 0.0
