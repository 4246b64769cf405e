"""The PROXY protocol header reader: every field, both versions, split reads, refusals."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from hato.server._proxy import (
    MAX_V1_LINE,
    MAX_V2_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
    starts_like_proxy_header,
)

AFTER = b"EHLO client.example\r\n"


def v2(
    command: int = 1,
    family: int = 0x11,
    addresses: bytes = b"",
    tlvs: bytes = b"",
    version: int = 2,
) -> bytes:
    payload = addresses + tlvs
    return (
        V2_SIGNATURE
        + bytes([version << 4 | command, family])
        + struct.pack("!H", len(payload))
        + payload
    )


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (
        ipaddress.ip_address(src).packed
        + ipaddress.ip_address(dst).packed
        + struct.pack("!HH", sport, dport)
    )


def read_all(data: bytes) -> tuple[ProxyHeader, int]:
    reader = ProxyHeaderReader()
    taken = reader.receive(data)
    assert reader.header is not None
    return reader.header, taken


V1_TCP4 = b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::10 2001:db8::1 40000 587\r\n"
V2_TCP4 = v2(addresses=inet("192.0.2.10", "198.51.100.1", 56324, 25))
V2_TCP6 = v2(family=0x21, addresses=inet("2001:db8::10", "2001:db8::1", 40000, 587))


@pytest.mark.parametrize(
    ("header", "version", "client", "server"),
    [
        (V1_TCP4, 1, ("192.0.2.10", 56324), ("198.51.100.1", 25)),
        (V1_TCP6, 1, ("2001:db8::10", 40000), ("2001:db8::1", 587)),
        (b"PROXY UNKNOWN\r\n", 1, None, None),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", 1, None, None),
        (V2_TCP4, 2, ("192.0.2.10", 56324), ("198.51.100.1", 25)),
        (V2_TCP6, 2, ("2001:db8::10", 40000), ("2001:db8::1", 587)),
        # LOCAL: the proxy's own health check; whatever follows is skipped.
        (v2(command=0, family=0x00), 2, None, None),
        (v2(command=0, family=0x11, addresses=inet("10.0.0.1", "10.0.0.2", 1, 2)), 2, None, None),
        # UNSPEC and AF_UNIX carry nothing Hato can use: the connection's own ends stand.
        (v2(family=0x00), 2, None, None),
        (v2(family=0x31, addresses=bytes(216)), 2, None, None),
    ],
)
def test_every_field_of_each_form(
    header: bytes,
    version: int,
    client: tuple[str, int] | None,
    server: tuple[str, int] | None,
) -> None:
    parsed, taken = read_all(header + AFTER)
    assert taken == len(header)  # never one byte of what follows
    assert parsed == ProxyHeader(version=version, client=client, server=server)


def test_tlvs_are_skipped() -> None:
    tlvs = b"\x01\x00\x02h2" + b"\x20\x00\x05" + b"\x01\x00\x00\x00\x00" + b"\x04\x00\x00"
    header = v2(addresses=inet("192.0.2.7", "192.0.2.1", 1025, 25), tlvs=tlvs)
    parsed, taken = read_all(header + AFTER)
    assert taken == len(header)
    assert parsed.client == ("192.0.2.7", 1025)


@pytest.mark.parametrize("header", [V1_TCP4, V1_TCP6, b"PROXY UNKNOWN\r\n", V2_TCP4, V2_TCP6])
def test_split_reads_at_every_point(header: bytes) -> None:
    whole, _ = read_all(header)
    stream = header + AFTER
    for cut in range(1, len(stream)):
        reader = ProxyHeaderReader()
        first = reader.receive(stream[:cut])
        second = reader.receive(stream[cut:])
        assert reader.header == whole, cut
        assert first + second == len(header), cut
        assert reader.receive(b"more") == 0  # done: nothing more is taken


def test_byte_at_a_time() -> None:
    for header in (V1_TCP4, V2_TCP6):
        reader = ProxyHeaderReader()
        for byte in header:
            assert reader.header is None and reader.wanted > 0
            assert reader.receive(bytes([byte])) == 1
        assert reader.header is not None and reader.wanted == 0


@pytest.mark.parametrize("header", [V1_TCP4, V1_TCP6, V2_TCP4, V2_TCP6, v2(command=0)])
def test_peeking_wanted_bytes_ends_within_three_reads(header: bytes) -> None:
    # What the listener does: peek at most `wanted` bytes, consume what the reader took.
    stream, position, reads = header + AFTER, 0, 0
    reader = ProxyHeaderReader()
    while reader.header is None:
        position += reader.receive(stream[position : position + reader.wanted])
        reads += 1
    assert position == len(header) and reads <= 3


def test_wanted_for_v2_is_exact_once_the_length_is_known() -> None:
    reader = ProxyHeaderReader()
    reader.receive(V2_TCP4[:16])
    assert reader.wanted == len(V2_TCP4) - 16


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"EHLO client.example\r\n", "not a PROXY"),
        (b"GET / HTTP/1.1\r\n", "not a PROXY"),
        (b"PROXX TCP4", "not a PROXY"),
        (b"\r\n\r\n\x00\r\nQUIX\n", "not a PROXY"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "wrong fields"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "wrong fields"),
        (b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", "not an IPv4"),
        (b"PROXY TCP4 ::1 ::2 1 2\r\n", "not an IPv4"),
        (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "not an IPv6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "above 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "not a number"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 025 2\r\n", "not a number"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "wrong fields"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xff\r\n", "ASCII"),
        (b"PROXY " + b"x" * MAX_V1_LINE, "longer than"),
        (v2(version=1), "version 1"),
        (v2(command=2), "neither LOCAL nor PROXY"),
        (v2(family=0x41), "unknown"),
        (v2(family=0x13, addresses=bytes(12)), "unknown"),
        (v2(family=0x11, addresses=bytes(8)), "need 12 bytes"),
        (v2(family=0x21, addresses=bytes(12)), "need 36 bytes"),
        (v2(addresses=inet("1.2.3.4", "5.6.7.8", 1, 2), tlvs=b"\x01\x00"), "truncated"),
        (v2(addresses=inet("1.2.3.4", "5.6.7.8", 1, 2), tlvs=b"\x01\x00\x09ab"), "runs past"),
        (V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", MAX_V2_PAYLOAD + 1), "at most"),
    ],
)
def test_garbage_is_refused_with_the_reason(data: bytes, words: str) -> None:
    reader = ProxyHeaderReader()
    with pytest.raises(ProxyHeaderError, match=words):
        reader.receive(data)
    assert reader.header is None


def test_garbage_is_refused_at_its_first_wrong_byte() -> None:
    reader = ProxyHeaderReader()
    reader.receive(b"PRO")
    with pytest.raises(ProxyHeaderError):
        reader.receive(b"Z")
    reader = ProxyHeaderReader()
    reader.receive(b"\r\n\r\n")
    with pytest.raises(ProxyHeaderError):
        reader.receive(b"X")


def test_truncated_header_is_incomplete_not_a_header() -> None:
    for header in (V1_TCP4, V2_TCP4):
        reader = ProxyHeaderReader()
        assert reader.receive(header[:-1]) == len(header) - 1
        assert reader.header is None and reader.wanted >= 1


def test_a_header_names_both_ends_or_neither() -> None:
    with pytest.raises(ValueError, match="both ends"):
        ProxyHeader(version=1, client=("192.0.2.1", 1))
    with pytest.raises(ValueError, match="version 3"):
        ProxyHeader(version=3)


@pytest.mark.parametrize(
    ("data", "looks"),
    [
        (V1_TCP4, True),
        (V2_TCP4, True),
        (V2_SIGNATURE[:8], True),
        (b"PROXY", False),
        (b"EHLO x\r\n", False),
        (b"\r\n", False),
        (b"", False),
    ],
)
def test_what_an_unlisted_client_is_refused_for(data: bytes, looks: bool) -> None:
    assert starts_like_proxy_header(data) is looks
