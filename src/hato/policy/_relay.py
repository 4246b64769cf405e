"""Relay control: who may send mail to domains that are not ours (no open relay).

A client may relay when it connects from a trusted network or (once AUTH exists) has
authenticated; everyone else may only send to local domains. The classic tricks that
smuggle a foreign address inside a local one (``user%other@ours``, ``other!user@ours``,
``"user@other"@ours``) are refused the same way for untrusted clients; a source route
(``@ours:user@other``) needs nothing here, since the engine drops the route and what
remains is the foreign address itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ..smtp import Reply, reply

__all__ = ["Decision", "RelayPolicy"]

# Characters that route mail onwards in older conventions: % (the percent hack),
# ! (UUCP bang paths) and @ (only possible inside a quoted local part).
_ROUTING_CHARACTERS = frozenset("%!@")


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """A refusal: the reply for the client, the reason for the event log, and the rule
    that refused ("" when no configured rule did: the unknown user, AUTH, the engine).

    Every refusal of a session has this one shape, whoever decided it."""

    reply: Reply
    reason: str
    rule: str = ""


class RelayPolicy:
    def __init__(self, trusted_networks: Iterable[str]) -> None:
        self.trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_networks)

    def is_trusted(self, client_ip: str) -> bool:
        address = client_address(client_ip)
        return address is not None and any(address in network for network in self.trusted)

    def may_relay(self, client_ip: str, *, authenticated: bool) -> bool:
        return authenticated or self.is_trusted(client_ip)

    def check(
        self, address: str, *, local: bool, client_ip: str, authenticated: bool
    ) -> Decision | None:
        """None when ``address`` may be accepted from this client as far as relaying goes."""
        if self.may_relay(client_ip, authenticated=authenticated):
            return None
        local_part = address.rpartition("@")[0]
        if not local:
            return _denied(
                address, f"relay to {address.rpartition('@')[2]} from an untrusted client"
            )
        if _ROUTING_CHARACTERS & set(local_part):
            return _denied(
                address, "routing characters (% ! @) in a local part from an untrusted client"
            )
        return None


def client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address as networks compare it (``::ffff:a.b.c.d`` is ``a.b.c.d``)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _denied(address: str, reason: str) -> Decision:
    return Decision(
        reply=reply(554, "5.7.1", f"<{address}>: Relay access denied"),
        reason=reason,
        rule="relay",
    )
