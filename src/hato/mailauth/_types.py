"""What the checks of a message find, as plain data: one result per method, RFC 8601 words.

These are the values the pipeline's filters, the access rules (``spf``, ``dkim``, ``dmarc``,
``dmarc_policy``, ``arc``), the ``Authentication-Results`` field and the flight recorder
share. Each check module (``_spf``, ``_dkim``, ``_dmarc``, ``_arc``) returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ARC_RESULTS",
    "DKIM_RESULTS",
    "DMARC_POLICIES",
    "DMARC_RESULTS",
    "SPF_RESULTS",
    "ArcResult",
    "AuthResults",
    "DkimResult",
    "DmarcResult",
    "SigningKey",
    "SpfResult",
    "TemporaryDnsError",
    "TxtResolver",
]

# RFC 7208 2.6 (and RFC 8601 2.7.2).
SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
# RFC 8601 2.7.1, per signature; "none" is the summary of a message without signatures.
DKIM_RESULTS = ("pass", "fail", "neutral", "policy", "temperror", "permerror", "none")
# RFC 7489 11.2.
DMARC_RESULTS = ("pass", "fail", "none", "temperror", "permerror")
DMARC_POLICIES = ("reject", "quarantine", "none")
# RFC 8617 4.4 (cv= values) and "none" without a chain.
ARC_RESULTS = ("pass", "fail", "none")


class TemporaryDnsError(Exception):
    """A lookup got no usable answer (SERVFAIL, timeout, garbage): a ``temperror``."""


class TxtResolver(Protocol):
    """The synchronous DNS the checks use, in a thread off the event loop.

    ``txt`` returns each TXT record of ``name`` with its strings joined, ``[]`` when the
    name does not exist or has none, and raises :class:`TemporaryDnsError` otherwise.
    ``query`` does the same for other types (``"A"``, ``"AAAA"``, ``"MX"``, ``"PTR"``),
    each record in its zone-file text form.
    """

    def txt(self, name: str) -> list[bytes]: ...

    def query(self, name: str, rtype: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: str  # one of SPF_RESULTS
    identity: str  # "mailfrom" or "helo" (RFC 7208 2.3/2.4)
    domain: str  # the domain whose record was evaluated
    sender: str  # the identity checked: the address, or postmaster@HELO
    explanation: str = ""  # for the header comment and the log


@dataclass(frozen=True, slots=True)
class DkimResult:
    """One DKIM-Signature's verification."""

    result: str  # one of DKIM_RESULTS except "none"
    domain: str  # d=
    selector: str  # s=
    algorithm: str = ""  # a=
    identity: str = ""  # i=, or "" when absent
    header_b: str = ""  # the first characters of b= (RFC 6008), to tell signatures apart
    reason: str = ""  # why it did not pass, in plain words


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: str  # one of DMARC_RESULTS
    from_domain: str  # the RFC5322.From domain ("" when there is none or several)
    policy: str = "none"  # what the domain asks for this message: after sp= and pct=
    published: str = ""  # the p= of the record that applied; "" without a record
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: str  # one of ARC_RESULTS: the chain validation (cv=) of the last set
    instance: int = 0  # the highest i= seen (0 without a chain)
    sealers: tuple[str, ...] = ()  # d= of each ARC-Seal, oldest first
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AuthResults:
    """Everything the inbound checks found about one message."""

    spf: SpfResult | None = None
    dkim: tuple[DkimResult, ...] = ()
    dmarc: DmarcResult | None = None
    arc: ArcResult | None = None

    @property
    def dkim_summary(self) -> str:
        """For the access rules: "pass" when any signature passed, "none" without one,
        otherwise "fail"."""
        if not self.dkim:
            return "none"
        return "pass" if any(d.result == "pass" for d in self.dkim) else "fail"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key to sign with: what DKIM signing and ARC sealing need of a key."""

    domain: str  # d=, an A-label domain
    selector: str  # s=
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    # RSA: the PEM (PKCS#8 or PKCS#1). Ed25519: the base64 of the 32-byte private seed, as
    # dkimpy takes it.
    private_key: bytes
    public_key: str  # the base64 p= value of the DNS record
