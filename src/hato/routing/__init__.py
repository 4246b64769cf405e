"""Routing (layer 2): where a recipient address leads.

What this package promises:

- ``LocalRouter.lookup`` answers at RCPT time whether an address exists here: a
  ``Mailbox``, an ``AliasMatch``, ``Unknown`` (a local domain, but nobody there) or
  ``NotLocal``. ``LocalRouter.expand`` answers at delivery time where a message goes:
  mailboxes, remote addresses and ``Failure``s with their RFC 3463 status.
- Decisions are pure: the only I/O is reading the account store, afresh on every call, so
  domains, users and aliases changed while the server runs count from the next message.
- postmaster@ every local domain always exists (RFC 5321 4.5.1), and so does the mailbox it
  leads to, user row or not.
- An expansion never runs away: alias loops and nesting deeper than ``MAX_ALIAS_DEPTH``
  fail with 5.4.6; every mailbox and remote address appears once.
- Remote addresses are only named here; relaying them is the delivery layer's business.
- ``NextHopRouter.route(domain)`` says where a remote domain's mail goes (transport table,
  smarthost, address literal or MX, with the TLS policy for each hop), through a
  ``Resolver`` (``DnspythonResolver`` in production, a real DNS server on loopback in
  tests). Every failure is a ``RouteError`` classified where it happens: NXDOMAIN (5.1.2),
  null MX (5.1.10), no route (5.4.4) and a loop back to this host (5.4.6) are permanent;
  SERVFAIL, REFUSED and timeouts (4.4.3) are transient.
"""

from hato.routing._dns import (
    DNS_TEMPORARY,
    NO_ROUTE,
    NO_SUCH_DOMAIN,
    DnsError,
    DnspythonResolver,
    DnsTemporaryFailure,
    MxRecord,
    NoRecords,
    NoSuchDomain,
    Resolver,
    RouteError,
    confirmed_name,
)
from hato.routing._local import (
    ALIAS_LOOP,
    BAD_ADDRESS,
    MAX_ALIAS_DEPTH,
    UNKNOWN_MAILBOX,
    AliasMatch,
    Expansion,
    Failure,
    LocalRouter,
    Lookup,
    Mailbox,
    NotLocal,
    Probe,
    ProbeCheck,
    Unknown,
    reaches,
    shadowing_alias,
)
from hato.routing._mx import (
    MAIL_LOOP,
    MAX_EXCHANGERS,
    NULL_MX,
    Exchanger,
    IsLocalHost,
    local_host_matcher,
    mail_exchangers,
)
from hato.routing._nexthop import SMTP_PORT, Hop, Hops, LocalRoute, NextHopRouter, Route, Via

__all__ = [
    "ALIAS_LOOP",
    "BAD_ADDRESS",
    "DNS_TEMPORARY",
    "MAIL_LOOP",
    "MAX_ALIAS_DEPTH",
    "MAX_EXCHANGERS",
    "NO_ROUTE",
    "NO_SUCH_DOMAIN",
    "NULL_MX",
    "SMTP_PORT",
    "UNKNOWN_MAILBOX",
    "AliasMatch",
    "DnsError",
    "DnsTemporaryFailure",
    "DnspythonResolver",
    "Exchanger",
    "Expansion",
    "Failure",
    "Hop",
    "Hops",
    "IsLocalHost",
    "LocalRoute",
    "LocalRouter",
    "Lookup",
    "Mailbox",
    "MxRecord",
    "NextHopRouter",
    "NoRecords",
    "NoSuchDomain",
    "NotLocal",
    "Probe",
    "ProbeCheck",
    "Resolver",
    "Route",
    "RouteError",
    "Unknown",
    "Via",
    "confirmed_name",
    "local_host_matcher",
    "mail_exchangers",
    "reaches",
    "shadowing_alias",
]
