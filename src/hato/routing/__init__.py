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
"""

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
    Unknown,
)

__all__ = [
    "ALIAS_LOOP",
    "BAD_ADDRESS",
    "MAX_ALIAS_DEPTH",
    "UNKNOWN_MAILBOX",
    "AliasMatch",
    "Expansion",
    "Failure",
    "LocalRouter",
    "Lookup",
    "Mailbox",
    "NotLocal",
    "Unknown",
]
