"""Test addresses for inbound mail (``hato test --receive``): one JSON file each.

``DATA/probes/probe-XXXXXXXX@domain.json`` holds the address, when it was made, when it
stops taking mail, and the analysis of each message that arrived (at most
``MAX_ANALYSES``, the latest kept). Files are replaced whole (written beside, synced,
renamed), so the server writing an analysis and ``hato test`` reading it from another
process never see half a file. A live address is accepted at RCPT and its mail analysed,
never delivered; any other ``probe-`` address of a local domain is refused as unknown.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LIFETIME",
    "MAX_ANALYSES",
    "PREFIX",
    "ProbeError",
    "ProbeRecord",
    "ProbeStore",
    "split_probe",
]

PREFIX = "probe-"
# How long a test address takes mail: long enough to send from another system by hand.
LIFETIME = 3600.0
# Analyses kept per address: a test address is for a few messages, not a mailbox.
MAX_ANALYSES = 10
# Records are removed this long after their address expired (when a new one is made).
KEEP_AFTER_EXPIRY = 7 * 86400.0
PROBES_DIR = "probes"
_TOKEN_LETTERS = "abcdefghijkmnpqrstuvwxyz23456789"  # no l/1/o/0 to misread
_LOCAL_RE = re.compile(r"probe-[a-z0-9]{1,32}")
_DOMAIN_RE = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")


class ProbeError(Exception):
    """A test address that cannot be made or read; the text says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeRecord:
    address: str
    created: float
    expires: float
    analyses: tuple[dict[str, Any], ...] = field(default=())

    def live(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.expires

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "created": self.created,
            "expires": self.expires,
            "analyses": list(self.analyses),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ProbeRecord:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        analyses = data.get("analyses", [])
        if not isinstance(analyses, list) or not all(isinstance(a, dict) for a in analyses):
            raise ValueError("'analyses' must be a list of objects")
        return cls(
            address=str(data["address"]),
            created=float(data["created"]),
            expires=float(data["expires"]),
            analyses=tuple(analyses),
        )


def split_probe(address: str) -> tuple[str, str] | None:
    """(local part, domain) of a test address's form, lowercased; None for any other."""
    local, at, domain = address.strip().removeprefix("<").removesuffix(">").rpartition("@")
    if not at or not local.lower().startswith(PREFIX):
        return None
    return local.lower(), domain.lower().rstrip(".")


class ProbeStore:
    """The test addresses under ``directory`` (``DATA/probes``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()  # analyses of one address written one at a time

    def _path(self, local: str, domain: str) -> Path | None:
        if not (_LOCAL_RE.fullmatch(local) and _DOMAIN_RE.fullmatch(domain)):
            return None  # never a file name made of what a client wrote
        return self.directory / f"{local}@{domain}.json"

    def create(
        self, domain: str, *, lifetime: float = LIFETIME, now: float | None = None
    ) -> ProbeRecord:
        """A new address in ``domain`` (an A-label domain), live for ``lifetime`` seconds
        (negative: already expired, for tests of the refusal)."""
        now = time.time() if now is None else now
        domain = domain.lower().rstrip(".")
        token = "".join(secrets.choice(_TOKEN_LETTERS) for _ in range(8))
        path = self._path(PREFIX + token, domain)
        if path is None:
            raise ProbeError(f"{domain!r} is not a domain a test address can be made in")
        record = ProbeRecord(
            address=f"{PREFIX}{token}@{domain}", created=now, expires=now + lifetime
        )
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prune(now)
        self._write(path, record)
        return record

    def get(self, address: str) -> ProbeRecord | None:
        """The record of ``address``, or None when there is none (or it is unreadable)."""
        parts = split_probe(address)
        path = self._path(*parts) if parts is not None else None
        if path is None:
            return None
        try:
            return ProbeRecord.from_dict(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ProbeError(f"{path}: unreadable ({error})") from None

    def check(self, address: str) -> bool | None:
        """``routing.ProbeCheck``: True for a live test address, False for another of that
        form (expired, unknown, unreadable), None for an address of any other form."""
        if split_probe(address) is None:
            return None
        try:
            record = self.get(address)
        except ProbeError:
            return False
        return record is not None and record.live()

    def record(self, address: str, analysis: dict[str, Any]) -> None:
        """Keep the analysis of a message that arrived at ``address``."""
        parts = split_probe(address)
        path = self._path(*parts) if parts is not None else None
        if path is None:
            raise ProbeError(f"{address!r} is not a test address")
        with self._lock:
            found = self.get(address)
            if found is None:
                raise ProbeError(f"{address} is not a test address made here")
            analyses = (*found.analyses, analysis)[-MAX_ANALYSES:]
            self._write(
                path,
                ProbeRecord(
                    address=found.address,
                    created=found.created,
                    expires=found.expires,
                    analyses=analyses,
                ),
            )

    def _write(self, path: Path, record: ProbeRecord) -> None:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        data = json.dumps(record.to_dict(), indent=1, default=str).encode()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)

    def _prune(self, now: float) -> None:
        for path in self.directory.glob(f"{PREFIX}*.json"):
            try:
                record = ProbeRecord.from_dict(json.loads(path.read_bytes()))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if record.expires + KEEP_AFTER_EXPIRY < now:
                path.unlink(missing_ok=True)
