"""The milter codec: commands as the protocol lays them out, replies from any split of
the stream, and garbage always a MilterProtocolError saying what was wrong."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hato import milter
from hato.milter import (
    Action,
    Command,
    Family,
    MacroStage,
    MilterProtocolError,
    Protocol,
    ReplyCode,
    ReplyReader,
)


def packet(code: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + code + data


def test_negotiate_is_version_actions_protocol() -> None:
    sent = milter.negotiate(Action.ADD_HEADERS | Action.QUARANTINE, Protocol.SKIP)
    assert sent == packet(b"O", struct.pack("!III", 6, 0x21, 0x400))


def test_macros_name_the_command_they_are_for() -> None:
    sent = milter.macros(Command.MAIL, {"i": "Q1", "{auth_authen}": "alice"})
    assert sent == packet(b"D", b"Mi\0Q1\0{auth_authen}\0alice\0")


def test_connect_carries_family_port_and_address() -> None:
    sent = milter.connect("mx.example", Family.INET6, 2525, "::1")
    assert sent == packet(b"C", b"mx.example\x006" + struct.pack("!H", 2525) + b"::1\0")
    assert milter.connect("localhost", Family.UNKNOWN, 0, "") == packet(b"C", b"localhost\0U")


def test_body_is_cut_into_chunks_of_at_most_65535() -> None:
    chunks = list(milter.body_packets(b"x" * (65535 * 2 + 10)))
    sizes = [struct.unpack("!I", c[:4])[0] - 1 for c in chunks]
    assert sizes == [65535, 65535, 10]
    assert all(c[4:5] == b"B" for c in chunks)
    assert list(milter.body_packets(b"")) == []


def test_strings_refuse_nul() -> None:
    with pytest.raises(ValueError, match="NUL"):
        milter.strings("a\0b")


def test_negotiation_reply_with_macro_lists() -> None:
    data = struct.pack("!III", 6, 0x1FF, 0x3000) + struct.pack("!I", 2) + b"i {mail_addr}\0"
    (reply,) = ReplyReader().feed(packet(b"O", data))
    assert isinstance(reply, milter.Negotiated)
    assert reply.actions == Action(0x1FF)
    assert reply.protocol == Protocol.NR_CONNECT | Protocol.NR_HELO
    assert reply.macros == {MacroStage.MAIL: ("i", "{mail_addr}")}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (packet(b"a"), milter.Accept()),
        (
            packet(b"y", b"554 5.7.1 Gtube pattern\0"),
            milter.ReplyWithCode(code=554, text="5.7.1 Gtube pattern"),
        ),
        (packet(b"q", b"spam\0"), milter.Quarantine(reason="spam")),
        (packet(b"h", b"X-Spam\0yes\0"), milter.AddHeader(name="X-Spam", value=b"yes")),
        (
            packet(b"i", struct.pack("!I", 0) + b"DKIM-Signature\0v=1\0"),
            milter.InsertHeader(index=0, name="DKIM-Signature", value=b"v=1"),
        ),
        (
            packet(b"m", struct.pack("!I", 2) + b"Subject\0\0"),
            milter.ChangeHeader(index=2, name="Subject", value=b""),
        ),
        (packet(b"e", b"<a@b>\0SIZE=10\0"), milter.ChangeFrom(sender="<a@b>", args="SIZE=10")),
        (packet(b"+", b"<c@d>\0"), milter.AddRecipient(recipient="<c@d>")),
        (
            packet(b"2", b"<c@d>\0NOTIFY=NEVER\0"),
            milter.AddRecipient(recipient="<c@d>", args="NOTIFY=NEVER"),
        ),
        (packet(b"-", b"<c@d>\0"), milter.DeleteRecipient(recipient="<c@d>")),
        (packet(b"b", b"new body\r\n"), milter.ReplaceBody(chunk=b"new body\r\n")),
    ],
)
def test_each_reply(data: bytes, expected: milter.Reply) -> None:
    assert ReplyReader().feed(data) == [expected]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (packet(b"Z"), "unknown reply code"),
        (struct.pack("!I", 0), "length 0"),
        (struct.pack("!I", milter.MAX_PACKET + 1), "at most"),
        (packet(b"y", b"hello\0"), "reply code"),
        (packet(b"y", b"250 ok\0"), "4xx or 5xx"),
        (packet(b"h", b"X-Spam\0yes"), "NUL-terminated"),
        (packet(b"h", b"Bad Name\0yes\0"), "header field name"),
        (packet(b"i", b"\0\0"), "index"),
        (packet(b"O", b"\0\0\0\x06"), "OPTNEG of 4 bytes"),
        (packet(b"O", struct.pack("!IIII", 6, 0, 0, 9) + b"i\0"), "unknown stage 9"),
    ],
)
def test_garbage_says_what_was_wrong(data: bytes, words: str) -> None:
    with pytest.raises(MilterProtocolError, match=words):
        ReplyReader().feed(data)


def test_answered_follows_the_negotiation() -> None:
    assert milter.answered(Command.RCPT, Protocol(0))
    assert not milter.answered(Command.RCPT, Protocol.NR_RCPT)
    assert not milter.answered(Command.HEADER, Protocol.NO_HEADERS)
    assert not milter.answered(Command.MACRO, Protocol(0))
    assert milter.answered(Command.END_OF_MESSAGE, Protocol(0x3FFFFF))
    assert not milter.sent(Command.BODY, Protocol.NO_BODY)
    assert milter.sent(Command.BODY, Protocol.NR_BODY)


# -- properties --------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30)
_name = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"),
    min_size=1,
    max_size=20,
)
_value = st.binary(max_size=40).filter(lambda b: b"\0" not in b)


def _z(text: str) -> bytes:
    return text.encode() + b"\0"


_packets = st.one_of(
    st.sampled_from([b"a", b"c", b"r", b"t", b"d", b"p", b"s", b"f", b"4"]).map(packet),
    st.builds(lambda n, v: packet(b"h", _z(n) + v + b"\0"), _name, _value),
    st.builds(
        lambda i, n, v: packet(b"m", struct.pack("!I", i) + _z(n) + v + b"\0"),
        st.integers(0, 2**32 - 1),
        _name,
        _value,
    ),
    st.builds(lambda t: packet(b"q", _z(t)), _text),
    st.builds(lambda t: packet(b"+", _z(t)), _text),
    st.builds(lambda t: packet(b"-", _z(t)), _text),
    st.builds(lambda c, t: packet(b"y", _z(f"{c} {t}")), st.integers(400, 599), _text),
    st.builds(lambda b: packet(b"b", b), st.binary(max_size=200)),
    st.builds(
        lambda a, p: packet(b"O", struct.pack("!III", 6, a, p)),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_packets, max_size=12), st.data())
def test_any_split_gives_the_same_replies(packets: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(packets)
    whole = ReplyReader().feed(stream)
    assert len(whole) == len(packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader, pieces, at = ReplyReader(), [], 0
    for cut in [*cuts, len(stream)]:
        pieces += reader.feed(stream[at:cut])
        at = cut
    assert pieces == whole
    assert reader.buffered == 0
    bytewise = ReplyReader()
    assert [r for i in range(len(stream)) for r in bytewise.feed(stream[i : i + 1])] == whole


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_garbage_is_a_clean_error(garbage: bytes, cuts: list[int]) -> None:
    reader, at = ReplyReader(), 0
    try:
        for cut in [*sorted(c for c in cuts if c <= len(garbage)), len(garbage)]:
            reader.feed(garbage[at:cut])
            at = cut
    except MilterProtocolError as error:
        assert str(error)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([c.value for c in ReplyCode]), st.binary(max_size=60))
def test_any_code_with_any_data_is_a_reply_or_a_clean_error(code: bytes, data: bytes) -> None:
    try:
        replies = ReplyReader().feed(packet(code, data))
    except MilterProtocolError as error:
        assert str(error)
    else:
        assert len(replies) == 1
