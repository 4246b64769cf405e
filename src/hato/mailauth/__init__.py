"""Mail authentication (layer 2): SPF, DKIM, DMARC, ARC and SRS over plain data.

Pure functions around the libraries made for each job (pyspf, dkimpy, authres,
publicsuffixlist), with DNS behind a :class:`TxtResolver` built from Hato's resolver
settings. Everything here is synchronous and may block on DNS: callers on the event loop
run it in a thread (``asyncio.to_thread``).
"""

from ._arc import arc_seal, verify_arc
from ._dkim import SigningError, sign_dkim, verify_dkim
from ._dns import MailDns
from ._header import authentication_results, claims_authserv_id
from ._types import (
    ARC_RESULTS,
    DKIM_RESULTS,
    DMARC_POLICIES,
    DMARC_RESULTS,
    SPF_RESULTS,
    ArcResult,
    AuthResults,
    DkimResult,
    DmarcResult,
    SigningKey,
    SpfResult,
    TemporaryDnsError,
    TxtResolver,
)

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
    "MailDns",
    "SigningError",
    "SigningKey",
    "SpfResult",
    "TemporaryDnsError",
    "TxtResolver",
    "arc_seal",
    "authentication_results",
    "claims_authserv_id",
    "sign_dkim",
    "verify_arc",
    "verify_dkim",
]
