"""The Sender Rewriting Scheme, in the address forms postsrsd and libsrs2 use.

When an alias forwards a message to another domain, the reverse-path is rewritten into
the forwarder's own domain, so the next hop's SPF check sees a domain that authorizes us,
and a bounce comes back to us to be sent on:

- ``SRS0=HHHH=TT=domain=local@srsdomain`` for an ordinary ``local@domain``: ``TT`` is the
  day (days since the epoch, modulo 1024, two base32 characters) and ``HHHH`` the first four
  base64 characters of HMAC-SHA1 over ``TT``, ``domain`` and ``local`` with our secret. A
  bounce to it is taken back within ``MAX_AGE`` days if the hash is ours.
- ``SRS1=HHHH=srshost==HHHH=TT=domain=local@srsdomain`` when the address was already an SRS0
  of another forwarder (``srshost``): the hash covers ``srshost`` and the SRS0 part, and a
  bounce goes back to that forwarder, which checks its own hash and age.

Hashes are made over lowercase text and compared without regard to case, since mail
systems on the way may change the case of a local part.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import time
from pathlib import Path

__all__ = ["MAX_AGE", "Srs", "is_srs", "load_srs_secret"]

MAX_AGE = 21  # days a bounce address stays valid
_HASH_LENGTH = 4
_DAY = 86400
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SLOTS = len(_BASE32) ** 2  # two characters of timestamp: the day modulo 1024
_SEPARATORS = "=+-"  # what may follow SRS0/SRS1 in addresses from other forwarders
_SECRET_SIZE = 32
_MIN_SECRET = 16


def _tag(local: str) -> str | None:
    """ "SRS0" or "SRS1" if the local part is one, else None."""
    head = local[:4].upper()
    if head in ("SRS0", "SRS1") and local[4:5] in tuple(_SEPARATORS):
        return head
    return None


def is_srs(address: str) -> bool:
    """Whether ``address`` is an SRS0 or SRS1 address (anyone's)."""
    local, at, _ = address.rpartition("@")
    return bool(at) and _tag(local) is not None


def _timestamp(now: float) -> str:
    day = int(now // _DAY) % _SLOTS
    return _BASE32[day // 32] + _BASE32[day % 32]


def _age(stamp: str, now: float) -> int | None:
    """Days since ``stamp`` was made (modulo 1024), or None if it is no timestamp."""
    stamp = stamp.upper()
    if len(stamp) != 2 or any(c not in _BASE32 for c in stamp):
        return None
    then = _BASE32.index(stamp[0]) * 32 + _BASE32.index(stamp[1])
    return (int(now // _DAY) - then) % _SLOTS


class Srs:
    """Rewriting into ``domain`` with ``secret`` (see :func:`load_srs_secret`)."""

    def __init__(self, secret: bytes, domain: str) -> None:
        if len(secret) < _MIN_SECRET:
            raise ValueError(f"an SRS secret needs at least {_MIN_SECRET} bytes")
        self._secret = secret
        self.domain = domain.lower().rstrip(".")

    def _hash(self, *parts: str) -> str:
        mac = hmac.new(self._secret, digestmod=hashlib.sha1)
        for part in parts:
            mac.update(part.lower().encode("utf-8", "surrogateescape"))
        return base64.b64encode(mac.digest()).decode("ascii")[:_HASH_LENGTH]

    def _valid(self, given: str, *parts: str) -> bool:
        return hmac.compare_digest(given.lower().encode(), self._hash(*parts).lower().encode())

    def forward(self, address: str, now: float | None = None) -> str:
        """The reverse-path to use when forwarding mail from ``address``. The null path,
        an address without a domain and one already in our domain stay as they are."""
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or domain.lower().rstrip(".") == self.domain:
            return address
        tag = _tag(local)
        if tag == "SRS1":
            # Another forwarder's SRS1: keep its first hop, vouch for it with our hash.
            parts = local[5:].split("=", 2)
            if len(parts) == 3 and parts[1]:
                _, srshost, srsuser = parts
                digest = self._hash(srshost, srsuser)
                return f"SRS1={digest}={srshost}={srsuser}@{self.domain}"
        if tag == "SRS0":
            srsuser = local[4:]  # with its separator: "=HHHH=TT=domain=local"
            digest = self._hash(domain, srsuser)
            return f"SRS1={digest}={domain}={srsuser}@{self.domain}"
        stamp = _timestamp(time.time() if now is None else now)
        digest = self._hash(stamp, domain, local)
        return f"SRS0={digest}={stamp}={domain}={local}@{self.domain}"

    def reverse(self, address: str, now: float | None = None) -> str | None:
        """Where a bounce to ``address`` goes: the original sender (SRS0) or the previous
        forwarder's SRS0 address (SRS1). None when it is not one of ours, its hash is not
        ours, or (SRS0) it is older than ``MAX_AGE`` days."""
        local, at, domain = address.rpartition("@")
        if not at or domain.lower().rstrip(".") != self.domain:
            return None
        tag = _tag(local)
        if tag == "SRS0":
            parts = local[5:].split("=", 3)
            if len(parts) != 4 or not all(parts):
                return None
            digest, stamp, orig_domain, orig_local = parts
            if not self._valid(digest, stamp, orig_domain, orig_local):
                return None
            age = _age(stamp, time.time() if now is None else now)
            if age is None or age > MAX_AGE:
                return None
            return f"{orig_local}@{orig_domain}"
        if tag == "SRS1":
            parts = local[5:].split("=", 2)
            if len(parts) != 3 or not all(parts[:2]) or len(parts[2]) < 2:
                return None
            digest, srshost, srsuser = parts
            if srsuser[0] not in _SEPARATORS or not self._valid(digest, srshost, srsuser):
                return None
            return f"SRS0{srsuser}@{srshost}"
        return None


def load_srs_secret(path: Path) -> bytes:
    """The secret kept at ``path``; made (32 random bytes, mode 0600) the first time.

    The file appears whole or not at all (written aside, then linked into place), so a
    crash never leaves an empty secret, and two processes starting together agree."""
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    staged = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(os.urandom(_SECRET_SIZE))
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(staged, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes()
    if len(secret) < _MIN_SECRET:
        raise ValueError(f"{path}: an SRS secret needs at least {_MIN_SECRET} bytes")
    return secret
