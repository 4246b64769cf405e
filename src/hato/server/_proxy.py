"""The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2), sans I/O.

A proxy in front of Hato (HAProxy's ``send-proxy``/``send-proxy-v2``) opens each
connection with one header naming the client it stands for, then relays the client's
bytes. :class:`ProxyHeaderReader` takes bytes as they arrive and consumes exactly the
header's bytes, never one beyond it, so whatever follows (SMTP, or a TLS handshake) is
left for whoever reads next. Everything wrong is a :class:`ProxyHeaderError` saying what.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = [
    "MAX_V1_LINE",
    "MAX_V2_PAYLOAD",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "starts_like_proxy_header",
]

V1_PREFIX = b"PROXY "
# Version 2's fixed part: a signature no protocol starts with, then version+command,
# family+transport and the length of what follows (big-endian).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
# "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n": the spec's worst case.
MAX_V1_LINE = 107
# Addresses take at most 216 bytes (AF_UNIX); the rest is TLVs (ALPN, TLS facts, ...),
# which Hato skips. A header longer than this is refused, not buffered without end.
MAX_V2_PAYLOAD = 2048
# v2 families (high nibble of byte 14) and the address block each needs.
_V2_INET, _V2_INET6, _V2_UNIX = 0x1, 0x2, 0x3
_V2_ADDRESS_SIZE = {_V2_INET: 12, _V2_INET6: 36, _V2_UNIX: 216}
_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_V2_STREAM = 0x1


class ProxyHeaderError(ValueError):
    """The peer sent no valid PROXY header: the connection is refused, the text says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyHeader:
    """What one header said. ``client`` and ``server`` are None when the proxy speaks for
    itself (v2 LOCAL, a health check) or does not know (v1 UNKNOWN, v2 UNSPEC/UNIX): the
    connection's own addresses stand, as the spec says."""

    version: int
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"PROXY protocol version {self.version} does not exist")
        if (self.client is None) != (self.server is None):
            raise ValueError("a header names both ends or neither")


class ProxyHeaderReader:
    """Feed bytes with :meth:`receive` until :attr:`header` is set.

    ``receive`` returns how many of the given bytes belonged to the header; the rest (if
    the header ended inside them) were not consumed. :attr:`wanted` is the most bytes
    that could still belong to the header, so a caller peeking at a socket needs no more.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.header: ProxyHeader | None = None

    @property
    def wanted(self) -> int:
        buffer = self._buffer
        if self.header is not None:
            return 0
        if buffer[:1] == b"P":
            return MAX_V1_LINE - len(buffer)
        if len(buffer) >= V2_FIXED:
            return V2_FIXED + int.from_bytes(buffer[14:16], "big") - len(buffer)
        if buffer:
            return V2_FIXED - len(buffer)
        return MAX_V1_LINE  # either version: the longest v1 line, or a v2 header and more

    def receive(self, data: bytes) -> int:
        """Take the header's bytes from ``data``; raise :class:`ProxyHeaderError` as soon
        as what arrived cannot be (the start of) a header."""
        if self.header is not None or not data:
            return 0
        buffer = self._buffer
        before = len(buffer)
        buffer += data
        end = self._end()
        if end is None:
            return len(data)
        del buffer[end:]
        whole = bytes(buffer)
        self.header = parse_v1(whole) if whole[:1] == b"P" else parse_v2(whole)
        return end - before

    def _end(self) -> int | None:
        """Where the header ends in the buffer; None while it is incomplete."""
        buffer = self._buffer
        if buffer[:1] == b"P":
            if not V1_PREFIX.startswith(buffer[:6]):
                raise ProxyHeaderError("not a PROXY protocol header")
            line_end = buffer.find(b"\n", 0, MAX_V1_LINE)
            if line_end >= 0:
                return line_end + 1
            if len(buffer) >= MAX_V1_LINE:
                raise ProxyHeaderError(f"PROXY line longer than {MAX_V1_LINE} bytes")
            return None
        if not V2_SIGNATURE.startswith(buffer[:12]):
            raise ProxyHeaderError("not a PROXY protocol header")
        if len(buffer) < V2_FIXED:
            return None
        if buffer[12] >> 4 != 2:
            raise ProxyHeaderError(f"PROXY protocol version {buffer[12] >> 4} is not 2")
        length = int.from_bytes(buffer[14:16], "big")
        if length > MAX_V2_PAYLOAD:
            raise ProxyHeaderError(f"PROXY v2 header of {length} bytes (at most {MAX_V2_PAYLOAD})")
        total = V2_FIXED + length
        return total if len(buffer) >= total else None


def starts_like_proxy_header(data: bytes) -> bool:
    """Whether a client's first bytes look like a PROXY header (v1, or v2's signature):
    what a peer not allowed to send one is refused for."""
    return data.startswith(V1_PREFIX) or (len(data) >= 8 and V2_SIGNATURE.startswith(data[:12]))


def parse_v1(line: bytes) -> ProxyHeader:
    """``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`` or ``PROXY UNKNOWN ...\\r\\n``."""
    if not line.endswith(b"\r\n"):
        raise ProxyHeaderError("PROXY line does not end with CRLF")
    try:
        text = line[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY line is not ASCII") from None
    fields = text.split(" ")
    if fields[0] != "PROXY" or len(fields) < 2:
        raise ProxyHeaderError("PROXY line without a protocol")
    if fields[1] == "UNKNOWN":  # the rest of the line, whatever it is, is ignored
        return ProxyHeader(version=1)
    if fields[1] not in ("TCP4", "TCP6") or len(fields) != 6:
        raise ProxyHeaderError(f"PROXY line has the wrong fields: {text!r}")
    family = ipaddress.IPv4Address if fields[1] == "TCP4" else ipaddress.IPv6Address
    client = (_v1_address(fields[2], family), _v1_port(fields[4]))
    server = (_v1_address(fields[3], family), _v1_port(fields[5]))
    return ProxyHeader(version=1, client=client, server=server)


def _v1_address(
    text: str, family: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
) -> str:
    try:
        return str(family(text))
    except ValueError:
        raise ProxyHeaderError(
            f"PROXY line: {text!r} is not an {family.__name__[:4]} address"
        ) from None


def _v1_port(text: str) -> int:
    # Decimal without a sign or leading zeros, 0 to 65535.
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError(f"PROXY line: port {text!r} is not a number")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"PROXY line: port {port} is above 65535")
    return port


def parse_v2(header: bytes) -> ProxyHeader:
    """The 16-byte fixed part, then the addresses for the family, then TLVs (skipped)."""
    if not header.startswith(V2_SIGNATURE) or len(header) < V2_FIXED:
        raise ProxyHeaderError("not a PROXY v2 header")
    version, command = header[12] >> 4, header[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY protocol version {version} is not 2")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"PROXY v2 command {command} is neither LOCAL nor PROXY")
    family, transport = header[13] >> 4, header[13] & 0x0F
    payload = header[V2_FIXED:]
    if len(payload) != int.from_bytes(header[14:16], "big"):
        raise ProxyHeaderError("PROXY v2 header length does not match")
    if command == _V2_LOCAL:  # the proxy's own connection (a health check)
        return ProxyHeader(version=2)
    if family > _V2_UNIX or transport > 0x2:
        raise ProxyHeaderError(f"PROXY v2 family/transport 0x{header[13]:02x} is unknown")
    need = _V2_ADDRESS_SIZE.get(family, 0)
    if len(payload) < need:
        raise ProxyHeaderError(f"PROXY v2 addresses need {need} bytes, got {len(payload)}")
    if family not in (_V2_INET, _V2_INET6) or transport != _V2_STREAM:
        return ProxyHeader(version=2)  # UNSPEC, AF_UNIX or datagrams: nothing to use
    size = 4 if family == _V2_INET else 16
    make = ipaddress.IPv4Address if family == _V2_INET else ipaddress.IPv6Address
    source = str(make(payload[:size]))
    destination = str(make(payload[size : 2 * size]))
    ports = payload[2 * size : 2 * size + 4]
    client = (source, int.from_bytes(ports[:2], "big"))
    server = (destination, int.from_bytes(ports[2:], "big"))
    _check_tlvs(payload[need:])
    return ProxyHeader(version=2, client=client, server=server)


def _check_tlvs(data: bytes) -> None:
    """TLVs are skipped, but each must fit: a torn one means a broken header."""
    at = 0
    while at < len(data):
        if len(data) - at < 3:
            raise ProxyHeaderError("PROXY v2 TLV is truncated")
        length = int.from_bytes(data[at + 1 : at + 3], "big")
        at += 3 + length
        if at > len(data):
            raise ProxyHeaderError("PROXY v2 TLV runs past the header")
