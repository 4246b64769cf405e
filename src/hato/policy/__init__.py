"""Policy (layer 2): pure decisions about who may do what, each with its reason.

Checks return ``None`` (go on) or a :class:`Decision` carrying the reply to send and the
reason the event log records, so every refusal says which rule made it.
"""

from ._access import STAGES, AccessPolicy, Facts, dnsbl_listed, dnsbl_query, helo_is_valid
from ._auth_limit import AuthLimiter
from ._rates import ClientLimits
from ._relay import Decision, RelayPolicy

__all__ = [
    "STAGES",
    "AccessPolicy",
    "AuthLimiter",
    "ClientLimits",
    "Decision",
    "Facts",
    "RelayPolicy",
    "dnsbl_listed",
    "dnsbl_query",
    "helo_is_valid",
]
