"""A small authoritative DNS server for tests, and its ``dns_server`` fixture.

It listens on loopback (``127.0.0.1`` by default, ``::1`` on request) on one free port over
UDP and TCP, in background threads, so sync and async tests (and child processes such as a
``hato serve`` given ``dns.nameservers = [server.address]``) can all ask it. It answers from
records the test adds, as an authoritative server would:

- AA set; the records of the name and type asked, if any; otherwise NOERROR with no answer
  (the name exists: it has records of another type, or names below it do) or NXDOMAIN, each
  with the zone's SOA in the authority section. No CNAME chasing, no wildcards.
- REFUSED for names outside its zones (``zones``, the root by default: every name).
- ``servfail(name)`` answers SERVFAIL, ``refuse(name)`` REFUSED, ``silence(name)`` never
  answers (the client times out); each for one type or all of them, until ``heal(name)``.
- Over UDP, an answer larger than the client can take (512 bytes without EDNS) is sent
  empty with TC set, so the client must ask again over TCP (``queries`` shows it did).
- A query the server itself fails on is kept in ``errors`` (the client only sees a
  timeout); the fixture fails the test with it at teardown.

Values are zone-file text, names taken as absolute: ``add("example.test", "MX",
"10 mx.example.test")``, ``add("example.test", "MX", "0 .")`` (a null MX).

Use it by importing the fixture explicitly (it must be in the test module's namespace);
its function is ``dns_server_fixture``, the name tests ask for is ``dns_server``::

    from dns_server import DnsServer, dns_server_fixture  # noqa: F401

    def test_something(dns_server: DnsServer) -> None:
        dns_server.add("mx.example.test", "A", "127.0.0.2")
        resolver = DnspythonResolver([dns_server.nameserver])
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from hato.config import HostPort

# Largest UDP answer to a client that did not say more with EDNS (RFC 1035 4.2.1).
UDP_LIMIT = 512
# How long a TCP connection may sit idle before the server drops it (a client that gave up
# on a silenced name never closes it otherwise).
TCP_IDLE = 10.0
# Tries at finding a port free for both UDP and TCP.
BIND_TRIES = 20

_IN = dns.rdataclass.IN


@dataclass(frozen=True, slots=True)
class Query:
    """A question the server received: name (lowercase, no final dot), type, transport."""

    name: str
    rtype: str
    tcp: bool


class DnsServer:
    """An authoritative server for ``zones`` on ``host``; ``start()`` it, ``stop()`` it."""

    def __init__(self, zones: Iterable[str] = (".",), host: str = "127.0.0.1") -> None:
        self.host = host
        self.zones = [dns.name.from_text(zone) for zone in zones]
        self.queries: list[Query] = []
        # Tracebacks of queries the server itself failed on: a bug here, not in the client.
        self.errors: list[str] = []
        self._records: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], list[str]] = {}
        self._faults: dict[tuple[dns.name.Name, dns.rdatatype.RdataType | None], str] = {}
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._port: int | None = None

    # -- the zone -----------------------------------------------------------------------

    def add(self, name: str, rtype: str, value: str, ttl: int = 60) -> None:
        """Add one record, e.g. ``add("mx.example.test", "AAAA", "::1")``."""
        owner = dns.name.from_text(name)
        rdtype = dns.rdatatype.from_text(rtype)
        _rrset(owner, rdtype, [value], ttl)  # a malformed value fails here, in the test
        with self._lock:
            self._records.setdefault((owner, rdtype), []).append(value)

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove the records of ``name`` (of type ``rtype`` only, if given)."""
        owner = dns.name.from_text(name)
        with self._lock:
            for key in [key for key in self._records if key[0] == owner]:
                if rtype is None or key[1] == dns.rdatatype.from_text(rtype):
                    del self._records[key]

    def servfail(self, name: str, rtype: str | None = None) -> None:
        """Answer SERVFAIL for ``name`` (for ``rtype`` only, if given)."""
        self._fault(name, rtype, "servfail")

    def refuse(self, name: str, rtype: str | None = None) -> None:
        """Answer REFUSED for ``name`` (for ``rtype`` only, if given)."""
        self._fault(name, rtype, "refuse")

    def silence(self, name: str, rtype: str | None = None) -> None:
        """Never answer for ``name`` (for ``rtype`` only, if given): the client times out."""
        self._fault(name, rtype, "silence")

    def heal(self, name: str) -> None:
        """Answer ``name`` normally again."""
        owner = dns.name.from_text(name)
        with self._lock:
            for key in [key for key in self._faults if key[0] == owner]:
                del self._faults[key]

    def _fault(self, name: str, rtype: str | None, fault: str) -> None:
        rdtype = None if rtype is None else dns.rdatatype.from_text(rtype)
        with self._lock:
            self._faults[(dns.name.from_text(name), rdtype)] = fault

    # -- answering ----------------------------------------------------------------------

    def answer(self, wire: bytes, tcp: bool) -> bytes | None:
        """The reply to one query message; None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not even an ID to answer to
        response = dns.message.make_response(query)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        qname, rdtype = question.name, dns.rdatatype.RdataType(question.rdtype)
        with self._lock:
            self.queries.append(Query(qname.to_text(omit_final_dot=True).lower(), rdtype.name, tcp))
            fault = self._faults.get((qname, rdtype)) or self._faults.get((qname, None))
            if fault == "silence":
                return None
            self._fill(response, qname, rdtype, fault)
        wire = response.to_wire()
        limit = query.payload if query.edns >= 0 else UDP_LIMIT
        if not tcp and len(wire) > limit:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC | dns.flags.AA
            return truncated.to_wire()
        return wire

    def _fill(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        fault: str | None,
    ) -> None:
        zone = max((z for z in self.zones if qname.is_subdomain(z)), key=len, default=None)
        if fault == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return
        if fault == "refuse" or zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return
        response.flags |= dns.flags.AA
        values = self._records.get((qname, rdtype))
        if values:
            response.answer.append(_rrset(qname, rdtype, values))
            return
        if not self._exists(qname, zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        names = [dns.name.from_text(label, origin=zone) for label in ("ns", "hostmaster")]
        soa = f"{names[0]} {names[1]} 1 3600 600 86400 60"
        response.authority.append(_rrset(zone, dns.rdatatype.SOA, [soa]))

    def _exists(self, qname: dns.name.Name, zone: dns.name.Name) -> bool:
        """Whether the name has records, or names below it do (an empty non-terminal)."""
        return qname == zone or any(owner.is_subdomain(qname) for owner, _ in self._records)

    # -- the sockets --------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the DNS server is not running")
        return self._port

    @property
    def address(self) -> str:
        """Where to ask, as Hato's ``dns.nameservers`` takes it: "ip:port" or "[ipv6]:port"."""
        return str(self.nameserver)

    @property
    def nameserver(self) -> HostPort:
        """Where to ask, as the loaded setting holds it (what ``DnspythonResolver`` takes)."""
        return HostPort(self.host, self.port)

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(BIND_TRIES):
            udp = _UdpServer(family, (self.host, 0), self)
            port = udp.server_address[1]
            try:
                tcp = _TcpServer(family, (self.host, port), self)
            except OSError:
                udp.server_close()  # the TCP port of that number is taken: try another
                continue
            self._servers = [udp, tcp]
            self._port = port
            for server in self._servers:
                thread = threading.Thread(
                    target=server.serve_forever, args=(0.05,), name=f"dns-{port}", daemon=True
                )
                thread.start()
            return
        raise RuntimeError(f"no port free for both UDP and TCP on {self.host}")

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []
        self._port = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _UdpServer(socketserver.UDPServer):
    def __init__(self, family: int, address: tuple[str, int], dns_server: DnsServer) -> None:
        self.address_family = family
        self.dns_server = dns_server
        super().__init__(address, _UdpHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.dns_server.errors.append(traceback.format_exc())


class _UdpHandler(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.dns_server.answer(data, tcp=False)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, family: int, address: tuple[str, int], dns_server: DnsServer) -> None:
        self.address_family = family
        self.dns_server = dns_server
        super().__init__(address, _TcpHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.dns_server.errors.append(traceback.format_exc())


class _TcpHandler(socketserver.BaseRequestHandler):
    server: _TcpServer
    request: Any

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(TCP_IDLE)
        with contextlib.suppress(OSError):
            while (size := _read_exactly(sock, 2)) is not None:
                wire = _read_exactly(sock, int.from_bytes(size, "big"))
                if wire is None:
                    return
                reply = self.server.dns_server.answer(wire, tcp=True)
                if reply is not None:  # silenced: keep the connection, answer nothing
                    sock.sendall(len(reply).to_bytes(2, "big") + reply)


def _rrset(
    owner: dns.name.Name, rdtype: dns.rdatatype.RdataType, values: list[str], ttl: int = 60
) -> dns.rrset.RRset:
    # Names in values are absolute, trailing dot or not: "10 mx.example.test".
    return dns.rrset.from_text_list(
        owner, ttl, _IN, rdtype, values, origin=dns.name.root, relativize=False
    )


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None if the peer closed first (RFC 1035 4.2.2 length framing)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@pytest.fixture(name="dns_server")
def dns_server_fixture() -> Iterator[DnsServer]:
    """A started ``DnsServer`` on 127.0.0.1, authoritative for every name. A query the
    server itself failed to answer fails the test at teardown (the client only saw a
    timeout)."""
    with DnsServer() as server:
        yield server
    assert not server.errors, "the test DNS server failed:\n" + "\n".join(server.errors)
