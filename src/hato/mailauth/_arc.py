"""ARC (RFC 8617) over dkimpy: the chain a message arrives with, and our seal on it.

:func:`verify_arc` validates the chain (``pass``, ``fail``, or ``none`` without one) and
names each sealer, oldest first, so policy can ask whether a trusted sealer vouches for a
message that fails DMARC. It never raises.

:func:`arc_seal` adds the next ARC set when a message is forwarded: the
ARC-Authentication-Results carries the results of our own checks, and ``cv=`` the chain's
state as :func:`verify_arc` found it (``none`` for the first set). A chain that already
failed is still sealed, with ``cv=fail`` (RFC 8617 5.1.1: the seal then covers only our
own set), so the next hop sees where it broke. dkimpy seals from an
``Authentication-Results`` field in the message, so one is put in front for it (and any
claiming our authserv-id taken away) in its parsed copy; only the new set is returned.
"""

from __future__ import annotations

import dataclasses
import re

import dkim

from ._dkim import MIN_RSA_BITS, KeyLookup, SigningError, header_list, rsa_pkcs1_pem
from ._header import authentication_results, claims_authserv_id
from ._types import ArcResult, AuthResults, SigningKey, TxtResolver

__all__ = ["arc_seal", "verify_arc"]

# RFC 8617 4.2.1: i= runs from 1 to 50; a message with 50 sets is not sealed again.
MAX_INSTANCE = 50


def verify_arc(dns: TxtResolver, message: bytes) -> ArcResult:
    """The chain validation of ``message``'s ARC sets."""
    try:
        arc = dkim.ARC(message, minkey=MIN_RSA_BITS)
        highest, fields = arc.sorted_arc_headers()
    except Exception as error:  # dkimpy's MessageFormatError, or worse, on odd input
        if re.search(rb"(?im)^arc-seal\s*:", message[: 1 << 20]):
            return ArcResult("fail", reason=f"unparsable header section: {error}")
        return ArcResult("none")
    if highest == 0:
        return ArcResult("none")
    sealers = _sealers(fields)
    lookup = KeyLookup(dns)
    try:
        validation, _, reason = arc.verify(dnsfunc=lookup)
    except Exception as error:  # the chain is hostile input too
        return ArcResult("fail", highest, sealers, f"{type(error).__name__}: {error}")
    if validation == dkim.CV_Pass:
        return ArcResult("pass", highest, sealers)
    text = str(reason)
    if lookup.problem:
        text = f"{text} ({lookup.problem})"
    return ArcResult("fail", highest, sealers, text)


def _sealers(fields: list[tuple[int, tuple[bytes, bytes]]]) -> tuple[str, ...]:
    """d= of each ARC-Seal, by instance ascending."""
    seals: dict[int, str] = {}
    for instance, (name, value) in fields:
        if name.lower() != b"arc-seal" or instance in seals:
            continue
        match = re.search(rb"(?:^|;)\s*d\s*=\s*([^;\s]+)", value)
        seals[instance] = match.group(1).decode("ascii", "replace").lower() if match else ""
    return tuple(seals[instance] for instance in sorted(seals))


def arc_seal(
    message: bytes,
    key: SigningKey,
    *,
    authserv_id: str,
    results: AuthResults,
    now: float | None = None,
) -> bytes:
    """The ARC set to prepend (ARC-Seal, ARC-Message-Signature,
    ARC-Authentication-Results, CRLF-terminated), for a message whose existing chain was
    verified into ``results.arc``. Raises :class:`SigningError` when it cannot be sealed:
    an unparsable header section, a key that is not RSA (RFC 8617 allows rsa-sha256
    only), or a chain already at i=50."""
    if key.algorithm != "rsa-sha256":
        raise SigningError(f"ARC seals with rsa-sha256 only, not {key.algorithm}")
    private = rsa_pkcs1_pem(key)
    try:
        arc = dkim.ARC(message, linesep=b"\r\n")
        highest, _ = arc.sorted_arc_headers()
    except Exception as error:
        raise SigningError(f"cannot seal: unparsable header section: {error}") from None
    if highest >= MAX_INSTANCE:
        raise SigningError(f"cannot seal: the chain already has {highest} sets")
    if highest == 0:
        chain = ArcResult("none")
    elif results.arc is not None and results.arc.result == "pass":
        chain = results.arc
    else:
        chain = ArcResult("fail", highest, reason="the chain did not validate")
    # dkimpy reads the chain state from the arc= clause, and wants the field unfolded.
    field = authentication_results(authserv_id, dataclasses.replace(results, arc=chain))
    value = re.sub(rb"\r\n[ \t]", b" ", field.split(b":", 1)[1])
    arc.headers = [
        (name, body)
        for name, body in arc.headers
        if name.lower() != b"authentication-results" or not claims_authserv_id(body, authserv_id)
    ]
    arc.headers.insert(0, [b"Authentication-Results", value])
    srv_id = _authserv_token(authserv_id)
    try:
        fields: list[bytes] = arc.sign(
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            private,
            srv_id,
            include_headers=header_list(name for name, _ in arc.headers),
            timestamp=None if now is None else int(now),
        )
    except dkim.DKIMException as error:
        raise SigningError(f"cannot seal: {error}") from None
    if not fields:
        raise SigningError("cannot seal: dkimpy found no results to carry")
    return b"".join(fields)


def _authserv_token(authserv_id: str) -> bytes:
    # authres lowercases the authserv-id it parses; dkimpy compares it with srv_id as is.
    return authserv_id.strip().lower().encode("ascii", "replace")
