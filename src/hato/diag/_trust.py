"""Whether a relay the test saw accepted is this machine's own Hato trusting the client.

From outside, a server that relays for everyone and one that relays for trusted networks
read the same: both say 250. When the target is our own Hato, its settings tell them
apart, so the relay test can say "trusted" instead of "OPEN RELAY".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..policy import RelayPolicy

__all__ = ["OwnServer"]

_WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnServer:
    """This machine's Hato, as its record (or its configuration) describes it."""

    listening: tuple[tuple[str, int], ...]  # (address, port) of every listener
    trusted_networks: tuple[str, ...]  # relay.trusted_networks as that server uses it
    source: str  # where these facts come from, for the report ("DATA/server.json")

    def serves(self, address: str, port: int, local_address: str | None) -> bool:
        """Whether ``address``:``port`` is one of its listeners.

        A wildcard listener (0.0.0.0, ::) takes any address of this machine: loopback, or
        one the kernel also used as our source, which it does for its own addresses.
        """
        target = _ip(address)
        if target is None:
            return False
        ours = target.is_loopback or (local_address is not None and _ip(local_address) == target)
        return any(
            listened == port and (_ip(host) == target or (host in _WILDCARDS and ours))
            for host, listened in self.listening
        )

    def trusting(self, client: str) -> str | None:
        """The trusted network holding ``client`` (as the server's relay policy decides),
        or None for an outside client."""
        for network in self.trusted_networks:
            if RelayPolicy([network]).is_trusted(client):
                return network
        return None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip
