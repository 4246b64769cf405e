"""The synchronous resolver the checks use: Hato's ``[dns]`` settings, a time limit, a memo.

The libraries (dkimpy, pyspf) and the DMARC lookup ask DNS synchronously, so they run in a
thread; :class:`MailDns` answers them through dnspython with the configured name servers.
:meth:`MailDns.for_message` gives a view that remembers its answers, so the lookups made
for one message (SPF at MAIL, DKIM and DMARC at the end) are never repeated.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from hato.config import HostPort

from ._types import TemporaryDnsError

__all__ = ["MailDns"]


class MailDns:
    """A :class:`TxtResolver` over dnspython: ``nameservers`` as ``dns.nameservers`` gives
    them ([] for /etc/resolv.conf), each lookup bounded by ``timeout`` seconds."""

    def __init__(self, nameservers: Sequence[HostPort] = (), timeout: float = 5.0) -> None:
        resolver = dns.resolver.Resolver(configure=not nameservers)
        if nameservers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(server.host, server.port) for server in nameservers
            ]
        resolver.lifetime = timeout
        resolver.timeout = timeout
        self._resolver = resolver
        self._memo: dict[tuple[str, str], list[str] | list[bytes] | TemporaryDnsError] | None = None
        self._lock = threading.Lock()

    def for_message(self) -> MailDns:
        """The same resolver with a memo of its own: one per message."""
        view = MailDns.__new__(MailDns)
        view._resolver = self._resolver
        view._memo = {}
        view._lock = threading.Lock()
        return view

    def txt(self, name: str) -> list[bytes]:
        found = self._remembered(name, "TXT")
        return [value if isinstance(value, bytes) else value.encode() for value in found]

    def query(self, name: str, rtype: str) -> list[str]:
        found = self._remembered(name, rtype.upper())
        return [value.decode() if isinstance(value, bytes) else value for value in found]

    def _remembered(self, name: str, rtype: str) -> list[str] | list[bytes]:
        key = (name.lower().rstrip("."), rtype)
        if self._memo is not None:
            with self._lock:
                known = self._memo.get(key)
            if isinstance(known, TemporaryDnsError):
                raise known
            if known is not None:
                return known
        try:
            answer: list[str] | list[bytes] = self._ask(key[0], rtype)
        except TemporaryDnsError as error:
            if self._memo is not None:
                with self._lock:
                    self._memo[key] = error
            raise
        if self._memo is not None:
            with self._lock:
                self._memo[key] = answer
        return answer

    def _ask(self, name: str, rtype: str) -> list[str] | list[bytes]:
        try:
            rdtype = dns.rdatatype.from_text(rtype)
        except dns.rdatatype.UnknownRdatatype:
            raise TemporaryDnsError(f"unknown record type {rtype!r}") from None
        try:
            answer = self._resolver.resolve(name + ".", rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise TemporaryDnsError(f"no answer for {name} {rtype} in time") from None
        except dns.resolver.NoNameservers as error:
            raise TemporaryDnsError(f"{name} {rtype}: {error}") from None
        except (dns.exception.DNSException, ValueError) as error:
            raise TemporaryDnsError(f"{name} {rtype}: {error}") from None
        if rdtype == dns.rdatatype.TXT:
            return [b"".join(record.strings) for record in answer]
        return [record.to_text() for record in answer]
