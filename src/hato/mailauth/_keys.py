"""DKIM keys under ``DATA/dkim/``: made, published, rotated and retired.

What is durable when: a private key file (``DOMAIN/SELECTOR.key``, mode 0600, in
directories of mode 0700) is written whole (temp file, fsync, rename, fsync of the
directory) before the state file (``keys.json``) names it, and the state file is replaced
the same way, so a crash leaves either the old state or the new one, never half of one.
Changes are made under an exclusive lock (``.lock``), so two commands never lose each
other's; readers need no lock.

A key is ``pending`` (made, to be published), ``active`` (signed with; at most one per
domain and algorithm), ``retiring`` (replaced by ``switch``, still published so mail
signed with it verifies, until ``retire_at``) or ``retired`` (kept on disk, never signed
with nor published). :meth:`DkimKeys.signing_keys`, called for every signed message, costs
one ``stat`` of the state file while nothing changed; a change made by ``hato dkim`` in
another process is seen on the next call.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from hato.accounts import AccountError, normalize_domain

from ._types import SigningKey, TemporaryDnsError, TxtResolver

__all__ = [
    "ALGORITHMS",
    "KEY_STATES",
    "DkimKey",
    "DkimKeyError",
    "DkimKeys",
    "DnsRecord",
    "InvalidKeyInput",
    "KeyCheck",
    "check_published",
    "dns_record",
    "domain_key_algorithms",
]

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
KEY_STATES = ("pending", "active", "retiring", "retired")
CHECK_STATES = ("match", "missing", "mismatch", "temperror")
# Keys a verifier may still look up: every one but the retired.
PUBLISHED_STATES = ("pending", "active", "retiring")
# RFC 8301 3.2: verifiers must refuse RSA keys under 1024 bits; signers should use 2048.
# Over 4096 bits the record no longer fits comfortably in one DNS answer (RFC 8301 3.2:
# verifiers need not go beyond 4096).
MIN_RSA_BITS = 1024
MAX_RSA_BITS = 4096
DEFAULT_RSA_BITS = 2048
ED25519_BITS = 256
# RFC 1035 3.3.14: one character-string of a TXT record holds at most 255 octets.
TXT_STRING_MAX = 255
# Seconds a replaced key stays published (hato's dkim.retire_after default: a week).
RETIRE_AFTER = 604800.0

STATE_FILE = "keys.json"
LOCK_FILE = ".lock"
STATE_VERSION = 1

# RFC 6376 3.1: selector = sub-domain *( "." sub-domain ); an LDH label of 1 to 63 octets.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_KEY_TYPE = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}


class DkimKeyError(Exception):
    """A change to the keys refused, or a key store that cannot be read: say why."""


class InvalidKeyInput(DkimKeyError):
    """Malformed input: a name that is not a domain or selector, a size out of range."""


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What DNS says about a key's record."""

    state: str  # one of CHECK_STATES
    detail: str  # in plain words, for the CLI and the log


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """The TXT record that publishes a key (RFC 6376 3.6.1, RFC 8463 4.2)."""

    name: str  # SELECTOR._domainkey.DOMAIN, without the final dot
    value: str  # the tag list, "v=DKIM1; k=rsa; p=..."
    strings: tuple[str, ...]  # value in pieces of at most 255 octets, as the record holds it
    zone_line: str  # a BIND zone-file line


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One key as the state file records it; the private key stays in ``path``."""

    domain: str  # A-label, lowercase
    selector: str
    algorithm: str  # one of ALGORITHMS
    bits: int
    created: float
    state: str  # one of KEY_STATES
    path: Path
    retire_at: float | None = None  # for a retiring key: when it becomes retired
    check_state: str | None = None  # the last recorded DNS check (one of CHECK_STATES)
    check_time: float | None = None
    check_detail: str = ""

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def signing_key(self) -> SigningKey:
        """The key to sign with, read from its file; DkimKeyError if it cannot be."""
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise DkimKeyError(
                f"cannot read the private key of {self.record_name} ({self.path}): "
                f"{error.strerror or error}"
            ) from None
        private, public = _loaded(self.algorithm, data, self.path)
        return SigningKey(self.domain, self.selector, self.algorithm, private, public)

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "selector": self.selector,
            "algorithm": self.algorithm,
            "bits": self.bits,
            "created": self.created,
            "state": self.state,
            "retire_at": self.retire_at,
            "check_state": self.check_state,
            "check_time": self.check_time,
            "check_detail": self.check_detail,
            "path": str(self.path),
        }


def _loaded(algorithm: str, data: bytes, path: Path) -> tuple[bytes, str]:
    """(private key as dkimpy signs with it, base64 public key for p=)."""
    try:
        if algorithm == "ed25519-sha256":
            seed = base64.b64decode(data.strip(), validate=True)
            ed_key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            raw = ed_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return base64.b64encode(seed), base64.b64encode(raw).decode()
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA key")
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return data, base64.b64encode(der).decode()
    except (ValueError, TypeError, binascii.Error) as error:
        raise DkimKeyError(
            f"the private key in {path} is not a usable {algorithm} key: {error}"
        ) from None


def _generated(algorithm: str, bits: int) -> bytes:
    if algorithm == "ed25519-sha256":
        seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- names -------------------------------------------------------------------------------------


def _domain(text: str) -> str:
    try:
        return normalize_domain(text)
    except AccountError as error:
        raise InvalidKeyInput(str(error)) from None


def _selector(text: str) -> str:
    selector = text.strip().lower()
    labels = selector.split(".")
    if not selector or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidKeyInput(
            f"{text!r} is not a valid selector: use letters, digits and hyphens, in labels of"
            " at most 63 characters separated by dots (RFC 6376 3.1)"
        )
    return selector


def _algorithm(text: str) -> str:
    if text not in ALGORITHMS:
        raise InvalidKeyInput(
            f"unknown algorithm {text!r}: use {' or '.join(ALGORITHMS)} (RFC 6376, RFC 8463)"
        )
    return text


# --- the DNS record --------------------------------------------------------------------------


def domain_key_algorithms(*, ed25519: bool = False) -> tuple[str, ...]:
    """The keys a new local domain gets (``hato domain add``, the API): RSA, which every
    verifier knows, and ed25519 (RFC 8463) beside it when asked."""
    return ("rsa-sha256", "ed25519-sha256") if ed25519 else ("rsa-sha256",)


def dns_record(key: DkimKey | SigningKey) -> DnsRecord:
    """The TXT record that publishes ``key``."""
    public = key.public_key if isinstance(key, SigningKey) else key.signing_key().public_key
    value = f"v=DKIM1; k={_KEY_TYPE[key.algorithm]}; p={public}"
    data = value.encode("ascii")
    strings = tuple(
        data[at : at + TXT_STRING_MAX].decode("ascii") for at in range(0, len(data), TXT_STRING_MAX)
    )
    name = f"{key.selector}._domainkey.{key.domain}"
    quoted = " ".join(f'"{piece}"' for piece in strings)
    return DnsRecord(name, value, strings, f"{name}. IN TXT ( {quoted} )")


def _tags(text: str) -> dict[str, str]:
    """RFC 6376 3.2 tag-list; ValueError when malformed or a tag repeats."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue  # a trailing ";" is allowed
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ValueError(f"{part.strip()!r} is not a tag=value pair")
        if name in tags:
            raise ValueError(f"the tag {name}= appears twice")
        tags[name] = value.strip()
    return tags


def check_published(dns: TxtResolver, key: DkimKey | SigningKey) -> KeyCheck:
    """Whether the TXT record at the key's name publishes exactly this key."""
    signing = key if isinstance(key, SigningKey) else key.signing_key()
    name = f"{signing.selector}._domainkey.{signing.domain}"
    try:
        records = dns.txt(name)
    except TemporaryDnsError as error:
        return KeyCheck("temperror", f"the lookup of {name} TXT failed: {error}")
    if not records:
        return KeyCheck("missing", f"no TXT record at {name}")
    if len(records) > 1:
        return KeyCheck(
            "mismatch",
            f"{len(records)} TXT records at {name}: a verifier takes only one, so publish"
            " exactly one",
        )
    try:
        text = records[0].decode("ascii")
        tags = _tags(text)
    except (UnicodeDecodeError, ValueError) as error:
        return KeyCheck("mismatch", f"the record at {name} is not a DKIM key record: {error}")
    # RFC 6376 3.6.1: v= is optional, but when present it is the first tag and says DKIM1.
    if "v" in tags and tags["v"] != "DKIM1":
        return KeyCheck("mismatch", f"the record at {name} is v={tags['v']}, not DKIM1")
    if "v" in tags and next(iter(tags)) != "v":
        return KeyCheck("mismatch", f"the record at {name} has v=DKIM1, but not as its first tag")
    wanted_type = _KEY_TYPE[signing.algorithm]
    published_type = tags.get("k", "rsa").lower()
    if published_type != wanted_type:
        return KeyCheck(
            "mismatch", f"the record at {name} has k={published_type}, the key is {wanted_type}"
        )
    hashes = [h.strip().lower() for h in tags.get("h", "sha256").split(":")]
    if "sha256" not in hashes:
        return KeyCheck("mismatch", f"the record at {name} allows h={tags['h']}, not sha256")
    services = [s.strip().lower() for s in tags.get("s", "*").split(":")]
    if "*" not in services and "email" not in services:
        return KeyCheck("mismatch", f"the record at {name} is for s={tags['s']}, not email")
    if "p" not in tags:
        return KeyCheck("mismatch", f"the record at {name} has no p= tag")
    published = re.sub(r"\s+", "", tags["p"])
    if not published:
        return KeyCheck("mismatch", f"the record at {name} revokes the key (an empty p=)")
    if published != signing.public_key:
        return KeyCheck("mismatch", f"the record at {name} publishes a different public key")
    return KeyCheck("match", f"{name} publishes this key")


# --- the store -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Snapshot:
    """The state file as last read, and what the server asks of it, worked out once."""

    stamp: tuple[int, int, int] | None
    keys: tuple[DkimKey, ...]
    signing: dict[tuple[str, bool], list[SigningKey]] = field(default_factory=dict)


class DkimKeys:
    """The DKIM keys in ``directory`` (``DATA/dkim``), made there on the first change."""

    def __init__(
        self,
        directory: Path,
        *,
        retire_after: float = RETIRE_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.retire_after = retire_after
        self._clock = clock
        self._state_path = directory / STATE_FILE
        self._lock = threading.Lock()
        self._snapshot = _Snapshot(None, ())

    # -- reading --------------------------------------------------------------------------

    def keys(self, domain: str | None = None) -> list[DkimKey]:
        """Every key (of ``domain``), by domain, algorithm and age; states as of now."""
        found = self._current().keys
        if domain is not None:
            wanted = _domain(domain)
            found = tuple(k for k in found if k.domain == wanted)
        return [self._aged(k) for k in found]

    def domains(self) -> list[str]:
        return sorted({k.domain for k in self._current().keys})

    def key(self, domain: str, selector: str) -> DkimKey:
        wanted, chosen = _domain(domain), _selector(selector)
        for found in self.keys(wanted):
            if found.selector == chosen:
                return found
        raise DkimKeyError(f"no key {chosen} for {wanted} (see hato dkim list)")

    def signing_keys(self, domain: str, *, include_contradicted: bool = False) -> list[SigningKey]:
        """The active keys of ``domain`` (at most one per algorithm, RSA first), without
        those whose last recorded DNS check found a different record, unless told to.

        A domain that is not a domain name has none. DkimKeyError when the state file or an
        active key's file cannot be read: better to refuse than to send unsigned mail that
        was promised a signature."""
        name = domain.lower().rstrip(".") if domain.isascii() else domain
        snapshot = self._current()
        cached = snapshot.signing.get((name, include_contradicted))
        if cached is not None:
            return list(cached)
        try:
            wanted = normalize_domain(domain)
        except AccountError:
            return []
        chosen = [
            k.signing_key()
            for k in snapshot.keys
            if k.domain == wanted
            and k.state == "active"
            and (include_contradicted or k.check_state != "mismatch")
        ]
        chosen.sort(key=lambda k: ALGORITHMS.index(k.algorithm))
        with self._lock:
            snapshot.signing[(name, include_contradicted)] = chosen
        return list(chosen)

    def _aged(self, key: DkimKey) -> DkimKey:
        """A retiring key past its retire_at is retired, whether or not that was written."""
        if key.state == "retiring" and key.retire_at is not None and key.retire_at <= self._clock():
            return replace(key, state="retired")
        return key

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self._state_path)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise DkimKeyError(f"cannot read {self._state_path}: {error.strerror}") from None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def _current(self) -> _Snapshot:
        stamp = self._stamp()
        snapshot = self._snapshot
        if stamp == snapshot.stamp:
            return snapshot
        with self._lock:
            if self._snapshot.stamp != stamp:
                self._snapshot = _Snapshot(stamp, self._read())
            return self._snapshot

    def _read(self) -> tuple[DkimKey, ...]:
        try:
            text = self._state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ()
        except OSError as error:
            raise DkimKeyError(f"cannot read {self._state_path}: {error.strerror}") from None
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            return tuple(self._from_json(entry) for entry in data["keys"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DkimKeyError(f"{self._state_path} is damaged: {error}") from None

    def _from_json(self, entry: dict[str, Any]) -> DkimKey:
        domain, selector = str(entry["domain"]), str(entry["selector"])
        state, algorithm = str(entry["state"]), str(entry["algorithm"])
        if state not in KEY_STATES or algorithm not in ALGORITHMS:
            raise ValueError(f"key {selector} of {domain}: state {state}, algorithm {algorithm}")
        return DkimKey(
            domain=domain,
            selector=selector,
            algorithm=algorithm,
            bits=int(entry["bits"]),
            created=float(entry["created"]),
            state=state,
            path=self._key_path(domain, selector),
            retire_at=None if entry.get("retire_at") is None else float(entry["retire_at"]),
            check_state=entry.get("check_state"),
            check_time=None if entry.get("check_time") is None else float(entry["check_time"]),
            check_detail=str(entry.get("check_detail") or ""),
        )

    def _key_path(self, domain: str, selector: str) -> Path:
        return self.directory / domain / f"{selector}.key"

    # -- changing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _changing(self) -> Iterator[list[DkimKey]]:
        """The keys to change, under the lock, written back (aged) when the block ends."""
        _make_private_dir(self.directory)
        descriptor = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            keys = [self._aged(k) for k in self._read()]
            yield keys
            body = {"version": STATE_VERSION, "keys": [_entry(k) for k in keys]}
            _write_atomically(self._state_path, json.dumps(body, indent=1).encode() + b"\n")
        finally:
            os.close(descriptor)  # releases the lock

    def generate(
        self,
        domain: str,
        *,
        selector: str | None = None,
        algorithm: str = "rsa-sha256",
        bits: int = DEFAULT_RSA_BITS,
        state: str = "active",
    ) -> DkimKey:
        """Make a key. ``state`` is "active" (refused while the domain has an active key of
        that algorithm: rotate instead) or "pending"."""
        wanted, algorithm = _domain(domain), _algorithm(algorithm)
        if state not in ("active", "pending"):
            raise InvalidKeyInput(f"a new key is active or pending, not {state!r}")
        if algorithm == "ed25519-sha256":
            bits = ED25519_BITS
        elif not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
            raise InvalidKeyInput(
                f"an RSA key of {bits} bits: use {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
                f" ({DEFAULT_RSA_BITS} recommended; RFC 8301 makes verifiers refuse fewer"
                f" than {MIN_RSA_BITS})"
            )
        chosen = None if selector is None else _selector(selector)
        with self._changing() as keys:
            mine = [k for k in keys if k.domain == wanted]
            if chosen is None:
                chosen = _next_selector(mine, algorithm, self._clock())
            elif any(k.selector == chosen for k in mine):
                raise DkimKeyError(f"{wanted} already has a key with the selector {chosen}")
            for other in mine:
                if other.algorithm == algorithm and other.state == state:
                    raise DkimKeyError(
                        f"{wanted} already has the {state} {algorithm} key {other.selector};"
                        + (
                            f" make its successor with hato dkim rotate {wanted}"
                            if state == "active"
                            else " publish it and switch to it, or remove it"
                        )
                    )
            path = self._key_path(wanted, chosen)
            _make_private_dir(path.parent)
            _write_atomically(path, _generated(algorithm, bits), exclusive=True)
            made = DkimKey(
                domain=wanted,
                selector=chosen,
                algorithm=algorithm,
                bits=bits,
                created=self._clock(),
                state=state,
                path=path,
            )
            keys.append(made)
        return made

    def ensure_active(self, domain: str, algorithm: str = "rsa-sha256") -> tuple[DkimKey, bool]:
        """The domain's active key of ``algorithm``, made if it has none; and whether it was
        made now (a domain added before, removed and added again keeps its key)."""
        wanted, algorithm = _domain(domain), _algorithm(algorithm)
        for key in self.keys(wanted):
            if key.algorithm == algorithm and key.state == "active":
                return key, False
        return self.generate(wanted, algorithm=algorithm), True

    def rotate(self, domain: str, *, algorithm: str = "rsa-sha256") -> DkimKey:
        """Make the successor of the domain's active key as "pending" (same size)."""
        wanted, algorithm = _domain(domain), _algorithm(algorithm)
        current = [k for k in self.keys(wanted) if k.algorithm == algorithm and k.state == "active"]
        bits = current[0].bits if current and algorithm == "rsa-sha256" else DEFAULT_RSA_BITS
        return self.generate(wanted, algorithm=algorithm, bits=bits, state="pending")

    def switch(
        self, domain: str, dns: TxtResolver, *, algorithm: str = "rsa-sha256", force: bool = False
    ) -> DkimKey:
        """Make the pending key active once DNS publishes it (or at once with ``force``);
        the key it replaces is retiring until ``retire_after`` seconds from now."""
        wanted, algorithm = _domain(domain), _algorithm(algorithm)
        pending = [
            k for k in self.keys(wanted) if k.algorithm == algorithm and k.state == "pending"
        ]
        if not pending:
            raise DkimKeyError(
                f"{wanted} has no pending {algorithm} key to switch to; make one with"
                f" hato dkim rotate {wanted}"
            )
        new = pending[0]
        check = check_published(dns, new)
        self.record_check(wanted, new.selector, check)
        if check.state != "match" and not force:
            raise DkimKeyError(
                f"not switching {wanted} to {new.selector}: {check.detail}; publish the"
                f" record (hato dkim dns {wanted}) and try again, or use --force"
            )
        now = self._clock()
        with self._changing() as keys:
            for at, key in enumerate(keys):
                if key.domain != wanted or key.algorithm != algorithm:
                    continue
                if key.selector == new.selector:
                    if key.state != "pending":
                        raise DkimKeyError(f"the key {key.selector} is {key.state} now")
                    keys[at] = new = replace(key, state="active")
                elif key.state == "active":
                    keys[at] = replace(key, state="retiring", retire_at=now + self.retire_after)
        return new

    def record_check(self, domain: str, selector: str, check: KeyCheck) -> None:
        """Remember what DNS said of a key (``signing_keys`` skips a "mismatch")."""
        wanted, chosen = _domain(domain), _selector(selector)
        with self._changing() as keys:
            for at, key in enumerate(keys):
                if key.domain == wanted and key.selector == chosen:
                    keys[at] = replace(
                        key,
                        check_state=check.state,
                        check_time=self._clock(),
                        check_detail=check.detail,
                    )
                    return
            raise DkimKeyError(f"no key {chosen} for {wanted}")

    def remove(self, domain: str, selector: str) -> DkimKey:
        """Forget a key and delete its file; returns the key as it was."""
        wanted, chosen = _domain(domain), _selector(selector)
        with self._changing() as keys:
            for at, key in enumerate(keys):
                if key.domain == wanted and key.selector == chosen:
                    del keys[at]
                    break
            else:
                raise DkimKeyError(f"no key {chosen} for {wanted} (see hato dkim list)")
        with contextlib.suppress(FileNotFoundError):
            key.path.unlink()
        return key


def _entry(key: DkimKey) -> dict[str, Any]:
    entry = key.to_json()
    del entry["path"]  # derived from the domain and selector
    return entry


def _next_selector(mine: list[DkimKey], algorithm: str, now: float) -> str:
    """``hato202612`` (RSA) or ``hato202612e`` (Ed25519), then ``-2``, ``-3``... in a month
    that already has one."""
    month = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y%m")
    base = f"hato{month}" + ("e" if algorithm == "ed25519-sha256" else "")
    taken = {k.selector for k in mine}
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def _write_atomically(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` (mode 0600) whole or not at all: temp file, fsync,
    rename, fsync of the directory. ``exclusive``: refuse to replace an existing file."""
    if exclusive and path.exists():
        raise DkimKeyError(f"{path} exists already; not replacing a key")
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
