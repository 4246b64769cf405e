"""Mail authentication (layer 2): SPF, DKIM, DMARC, ARC and SRS over plain data.

Pure functions around the libraries made for each job (pyspf, dkimpy, authres,
publicsuffixlist), with DNS behind a :class:`TxtResolver` built from Hato's resolver
settings. Everything here is synchronous and may block on DNS: callers on the event loop
run it in a thread (``asyncio.to_thread``).
"""

from ._dmarc import DmarcRecord, check_dmarc, organizational_domain, parse_dmarc_record
from ._dns import MailDns
from ._keys import (
    DkimKey,
    DkimKeyError,
    DkimKeys,
    DnsRecord,
    InvalidKeyInput,
    KeyCheck,
    check_published,
    dns_record,
)
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
    "SigningKey",
    "SpfResult",
    "Srs",
    "TemporaryDnsError",
    "TxtResolver",
    "check_dmarc",
    "check_published",
    "dns_record",
    "is_srs",
    "load_srs_secret",
    "organizational_domain",
    "parse_dmarc_record",
]
