"""Whether the name Hato gives itself can stand for it on the internet.

A name such as ``localhost`` or ``mail`` is valid, so it loads; but in a banner, an EHLO
and a ``Received:`` header it tells other servers nothing, and many refuse or score mail
from a client whose EHLO name is not a fully qualified domain (Postfix's
``reject_non_fqdn_helo_hostname``). It is what ``socket.getfqdn()`` gives on a machine
with no domain configured, so it is easy to get without noticing: hence a warning.
"""

from __future__ import annotations

__all__ = ["hostname_warning", "is_fully_qualified"]

# Names that only mean something on this machine or this link (RFC 6761, RFC 6762).
_LOCAL_ONLY = frozenset({"localhost", "localdomain", "local"})


def is_fully_qualified(hostname: str) -> bool:
    labels = hostname.rstrip(".").lower().split(".")
    return len(labels) >= 2 and labels[0] != "localhost" and labels[-1] not in _LOCAL_ONLY


def hostname_warning(hostname: str) -> str | None:
    """The warning for ``server.hostname`` (as loaded), or None when the name is fine."""
    if is_fully_qualified(hostname):
        return None
    return (
        f'server.hostname: "{hostname}" is not a fully qualified domain name; other servers'
        " may refuse or distrust mail from a server that greets them with it. Set"
        " server.hostname (or --hostname) to this server's public name, e.g. mx.example.com"
        ' ("" takes the machine\'s name from socket.getfqdn()).'
    )
