"""DKIM (RFC 6376, RFC 8463) over dkimpy: every signature verified, outbound mail signed.

:func:`verify_dkim` answers each ``DKIM-Signature`` with one :class:`DkimResult` in RFC 8601
words and never raises: dkimpy's exceptions (and anything else) become ``permerror`` with
the reason, its quiet ``False`` is told apart by what the key lookup saw (no record or a
revoked key: ``permerror``; DNS failure: ``temperror``; otherwise a bad signature:
``fail``). RSA keys under 1024 bits fail.

:func:`sign_dkim` builds one signature per key, relaxed/relaxed, no ``l=``, over the header
fields named in :data:`SIGNED_FIELDS` that are present, with From signed once more than it
occurs so a From added later breaks every signature. dkimpy signs with its own clock and
has no ``x=``, so the tag list is built here and signed with dkimpy's ``gen_header``.

dkimpy holds the whole message in memory (the parsed header fields and the body, plus the
canonicalized body while hashing); callers run both functions in a thread.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dkim
import dkim.crypto
import dkim.util
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ._types import DkimResult, SigningKey, TemporaryDnsError, TxtResolver

__all__ = [
    "SIGNED_FIELDS",
    "KeyLookup",
    "SigningError",
    "header_list",
    "rsa_pkcs1_pem",
    "sign_dkim",
    "verify_dkim",
]

# The fields signed when present (issue 13; RFC 6376 5.4.1's list, trimmed to what mail
# from Hato's users carries). From is always signed, and once more than it occurs.
SIGNED_FIELDS = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Post",
    "List-Help",
    "List-Archive",
    "List-Owner",
    "List-Subscribe",
)
# RFC 8301 3.2: verifiers MUST NOT consider signatures using RSA keys under 1024 bits valid.
MIN_RSA_BITS = 1024
HEADER_B_LENGTH = 8
ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
# dkimpy's ValidationError messages that describe a signature that is well formed but
# does not hold (fail), as opposed to a malformed one (permerror).
_FAILING = ("body hash mismatch", "x= value is past")


class SigningError(ValueError):
    """The message cannot be signed or sealed (unparsable header section, a key that is
    not what it claims, too many ARC sets): say so, and send it unsigned or refuse."""


# -- verifying ----------------------------------------------------------------------------


@dataclass
class KeyLookup:
    """dkimpy's DNS callback over a :class:`TxtResolver`, remembering what the last
    lookup found, since dkimpy turns every key problem into a bare ``False``."""

    dns: TxtResolver
    problem: str = ""  # "" (a usable key record), or why not
    result: str = ""  # "permerror" or "temperror" when problem is set
    seen: dict[str, tuple[bytes | None, str, str]] = field(default_factory=dict)

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        key = text.rstrip(".").lower()
        if key not in self.seen:
            self.seen[key] = self._look_up(key)
        record, self.result, self.problem = self.seen[key]
        if self.result == "temperror":
            raise dkim.DnsTimeoutError(self.problem)
        return record

    def _look_up(self, name: str) -> tuple[bytes | None, str, str]:
        try:
            records = self.dns.txt(name)
        except TemporaryDnsError as error:
            return None, "temperror", f"key lookup failed: {error}"
        # RFC 6376 3.6.2.2: a record that does not parse as a key is skipped.
        keys = [record for record in records if _looks_like_key(record)]
        if not keys:
            return None, "permerror", f"no key record at {name}"
        if len(keys) > 1:
            return None, "permerror", f"more than one key record at {name}"
        try:
            tags = dkim.util.parse_tag_value(keys[0])
        except dkim.util.InvalidTagValueList as error:
            return None, "permerror", f"key record at {name} malformed: {error}"
        if not tags.get(b"p", b"").strip():
            return None, "permerror", f"key at {name} revoked (empty p=)"
        try:
            dkim.evaluate_pk(name, keys[0])
        except (dkim.DKIMException, binascii.Error, ValueError, TypeError) as error:
            return None, "permerror", f"key record at {name} unusable: {error}"
        return keys[0], "", ""


def _looks_like_key(record: bytes) -> bool:
    return b"p=" in record and (not record.lstrip().startswith(b"v=") or b"DKIM1" in record)


def verify_dkim(dns: TxtResolver, message: bytes) -> tuple[DkimResult, ...]:
    """One result per ``DKIM-Signature`` field, topmost first; ``()`` without any."""
    try:
        verifier = dkim.DKIM(message, minkey=MIN_RSA_BITS)
    except Exception as error:  # dkimpy's MessageFormatError, or worse, on odd input
        if not re.search(rb"(?im)^dkim-signature\s*:", message[: 1 << 20]):
            return ()
        return (DkimResult("permerror", "", "", reason=f"unparsable header section: {error}"),)
    fields = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    lookup = KeyLookup(dns)
    return tuple(_verify_one(verifier, index, value, lookup) for index, value in enumerate(fields))


def _verify_one(verifier: dkim.DKIM, index: int, value: bytes, lookup: KeyLookup) -> DkimResult:
    tags = _tags(value)

    def result(word: str, reason: str = "") -> DkimResult:
        # dkimpy writes bytes values as b'...' in its messages: show them plainly.
        reason = re.sub(r"""b(['"])(.*?)\1""", r"\2", reason).strip()
        if word != "pass" and not reason:
            reason = "malformed DKIM-Signature field"
        return DkimResult(
            word,
            domain=tags.get("d", ""),
            selector=tags.get("s", ""),
            algorithm=tags.get("a", ""),
            identity=tags.get("i", ""),
            header_b=re.sub(r"\s+", "", tags.get("b", ""))[:HEADER_B_LENGTH],
            reason=reason,
        )

    if tags.get("a", "").lower() == "rsa-sha1":
        # RFC 8301 3.1: verifiers MUST NOT consider rsa-sha1 signatures valid.
        return result("permerror", "rsa-sha1 is not acceptable (RFC 8301)")
    lookup.problem = lookup.result = ""
    try:
        ok = verifier.verify(index, dnsfunc=lookup)
    except dkim.ValidationError as error:
        text = str(error)
        if text.startswith("body hash mismatch"):
            text = "body hash mismatch"  # dkimpy adds both hashes: noise in a header
        return result("fail" if text.startswith(_FAILING) else "permerror", text)
    except dkim.KeyFormatError as error:
        # Raised once the signature checked: the key is too small (RFC 8301), or so small
        # the digest does not fit it.
        return result("fail", str(error))
    except dkim.DKIMException as error:
        return result("permerror", str(error) or type(error).__name__)
    except Exception as error:  # anything dkimpy did not expect of hostile input
        return result("permerror", f"unverifiable signature: {type(error).__name__}: {error}")
    if ok:
        return result("pass")
    if lookup.problem:
        return result(lookup.result, lookup.problem)
    return result("fail", "signature did not verify")


def _tags(value: bytes) -> dict[str, str]:
    """The tags of a signature for the result, leniently: a malformed one still says
    whose it claims to be."""
    unfolded = re.sub(rb"\r?\n[ \t]", b" ", value)
    tags: dict[str, str] = {}
    for spec in unfolded.split(b";"):
        name, sep, tag_value = spec.partition(b"=")
        key = name.strip().decode("ascii", "replace").lower()
        if sep and key and key not in tags:
            tags[key] = tag_value.strip().decode("utf-8", "replace")
    return tags


# -- signing ------------------------------------------------------------------------------


def sign_dkim(
    message: bytes,
    keys: Sequence[SigningKey],
    *,
    expiry: float = 0,
    now: float | None = None,
) -> bytes:
    """The ``DKIM-Signature`` fields to prepend (one per key, in order, CRLF line ends,
    folded). ``x=`` is ``t=`` + ``expiry`` when ``expiry`` > 0. Raises
    :class:`SigningError` for a message without a parsable header section or an
    unusable key."""
    if not keys:
        return b""
    try:
        signer = dkim.DKIM(message, linesep=b"\r\n")
    except Exception as error:
        raise SigningError(f"cannot sign: unparsable header section: {error}") from None
    include = header_list(name for name, _ in signer.headers)
    timestamp = int(time.time() if now is None else now)
    canon = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    body_hash = base64.b64encode(
        dkim.crypto.HASH_ALGORITHMS[b"rsa-sha256"](canon.canonicalize_body(signer.body)).digest()
    )
    fields = []
    for key in keys:
        fields.append(_sign_one(signer, key, include, canon, body_hash, timestamp, expiry))
    return b"".join(fields)


def header_list(names: Iterable[bytes]) -> list[bytes]:
    present = [name.lower() for name in names]
    wanted = {name.lower().encode() for name in SIGNED_FIELDS}
    include = [name for name in present if name in wanted]
    # Oversign From: one more than occurs, so another From cannot be added (RFC 6376 8.15).
    include.append(b"from")
    return include


def _sign_one(
    signer: dkim.DKIM,
    key: SigningKey,
    include: list[bytes],
    canon: object,
    body_hash: bytes,
    timestamp: int,
    expiry: float,
) -> bytes:
    if key.algorithm not in ALGORITHMS:
        raise SigningError(f"cannot sign with {key.algorithm!r}: not one of {ALGORITHMS}")
    algorithm = key.algorithm.encode()
    private: object = _private_key(key)
    tags = [
        (b"v", b"1"),
        (b"a", algorithm),
        (b"c", b"relaxed/relaxed"),
        (b"d", key.domain.encode("ascii")),
        (b"s", key.selector.encode("ascii")),
        (b"t", str(timestamp).encode()),
    ]
    if expiry > 0:
        tags.append((b"x", str(timestamp + int(expiry)).encode()))
    tags += [
        (b"h", b" : ".join(include)),
        (b"bh", body_hash),
        # A placeholder dkimpy replaces; long, so b= starts its own folded line.
        (b"b", b"0" * 60),
    ]
    signer.signature_algorithm = algorithm
    signer.hasher = dkim.crypto.HASH_ALGORITHMS[algorithm]
    try:
        value: bytes = signer.gen_header(tags, tuple(include), canon, b"DKIM-Signature", private)
    except dkim.DKIMException as error:
        where = f"{key.selector}._domainkey.{key.domain}"
        raise SigningError(f"cannot sign with {where}: {error}") from None
    return b"DKIM-Signature: " + value


def rsa_pkcs1_pem(key: SigningKey) -> bytes:
    """An RSA key as the PKCS#1 PEM dkimpy parses (it reads no PKCS#8)."""
    where = f"{key.selector}._domainkey.{key.domain}"
    try:
        loaded = serialization.load_pem_private_key(key.private_key, password=None)
    except (ValueError, TypeError) as error:
        raise SigningError(f"the key for {where} is not a PEM private key: {error}") from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise SigningError(f"the key for {where} is not an RSA key")
    return loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _private_key(key: SigningKey) -> object:
    """The key as dkimpy signs with it, parsed once per key: loading an RSA key checks it,
    which costs far more than the signature itself (about 70 ms for rsa-2048)."""
    return _parsed_key(key)


@functools.lru_cache(maxsize=64)
def _parsed_key(key: SigningKey) -> object:
    """RSA as dkimpy's parsed PKCS#1, Ed25519 as PyNaCl's signing key."""
    where = f"{key.selector}._domainkey.{key.domain}"
    if key.algorithm == "rsa-sha256":
        return dkim.crypto.parse_pem_private_key(rsa_pkcs1_pem(key))
    import nacl.encoding
    import nacl.exceptions
    import nacl.signing

    try:
        return nacl.signing.SigningKey(key.private_key.strip(), encoder=nacl.encoding.Base64Encoder)
    except (nacl.exceptions.CryptoError, ValueError, TypeError, binascii.Error) as error:
        raise SigningError(f"the key for {where} is not an Ed25519 seed: {error}") from None
