"""Mail authentication (layer 2): SPF, DKIM, DMARC, ARC and SRS over plain data.

Pure functions around the libraries made for each job (pyspf, dkimpy, authres,
publicsuffixlist), with DNS behind a :class:`TxtResolver` built from Hato's resolver
settings. Everything here is synchronous and may block on DNS: callers on the event loop
run it in a thread (``asyncio.to_thread``).
"""

from ._arc import arc_seal, verify_arc
from ._dkim import SigningError, sign_dkim, verify_dkim
from ._dmarc import DmarcRecord, check_dmarc, organizational_domain, parse_dmarc_record
from ._dns import MailDns
from ._header import authentication_results, claims_authserv_id
from ._keys import (
    DkimKey,
    DkimKeyError,
    DkimKeys,
    DnsRecord,
    InvalidKeyInput,
    KeyCheck,
    check_published,
    dns_record,
    domain_key_algorithms,
)
from ._spf import SPF_TIME_LIMIT, check_spf
from ._srs import Srs, is_srs, load_srs_secret
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
    "SPF_TIME_LIMIT",
    "ArcResult",
    "AuthResults",
    "DkimKey",
    "DkimKeyError",
    "DkimKeys",
    "DkimResult",
    "DmarcRecord",
    "DmarcResult",
    "DnsRecord",
    "InvalidKeyInput",
    "KeyCheck",
    "MailDns",
    "SigningError",
    "SigningKey",
    "SpfResult",
    "Srs",
    "TemporaryDnsError",
    "TxtResolver",
    "arc_seal",
    "authentication_results",
    "check_dmarc",
    "check_published",
    "check_spf",
    "claims_authserv_id",
    "dns_record",
    "domain_key_algorithms",
    "is_srs",
    "load_srs_secret",
    "organizational_domain",
    "parse_dmarc_record",
    "sign_dkim",
    "verify_arc",
    "verify_dkim",
]
