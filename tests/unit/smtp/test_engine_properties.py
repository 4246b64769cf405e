"""Hypothesis walks the engine through arbitrary sessions: valid and invalid commands,
random bytes, DATA bodies and BDAT chunks, cut into reads at random points.

Whatever the client sends, the engine must not raise, must keep its state and its
envelope consistent, must only write well-formed replies, and must answer the same
bytes the same way however they were split into reads.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_harness import (
    HOST,
    NEEDS_REPLY,
    AcceptAll,
    bytewise,
    reply_lines,
    split_at,
    whole,
)

from hato.smtp import (
    PAUSED,
    CommandRejected,
    DataChunk,
    Event,
    Limits,
    MessageEnd,
    Reply,
    Reset,
    StartTls,
    State,
    reply,
)

REPLY_LINE = re.compile(r"[2-5][0-9][0-9][ -]")
ENHANCED = re.compile(r"([245])\.\d{1,3}\.\d{1,3} ")
NO_ENHANCED_CODE = {220, 221, 354, 334}
WITHOUT_TRANSACTION = {State.CONNECTED, State.GREETED, State.AUTH, State.TLS, State.CLOSED}
WITH_TRANSACTION = {State.MAIL, State.RCPT, State.DATA}

# -- what a client may send ----------------------------------------------------------------

PATHS = [
    "<alice@example.org>",
    "<>",
    '<"john doe"@example.com>',
    '<"a>b"@x.y>',
    "<user@[192.0.2.1]>",
    "<user@[IPv6:2001:db8::1]>",
    "<@hop.example:bob@example.com>",
    " <spaced@example.org>",
    "bare@example.org",
    "<Postmaster>",
    "<" + "l" * 65 + "@example.org>",
    "<bad@-domain->",
    "<jörg@exämple.org>",
    "<unclosed@example.org",
    "<no-at-sign>",
]
MAIL_PARAMS = [
    "SIZE=10",
    "SIZE=99999999",
    "SIZE=x",
    "SIZE=²",
    "BODY=8BITMIME",
    "BODY=BINARYMIME",
    "BODY=7BIT",
    "SMTPUTF8",
    "RET=HDRS",
    "ENVID=a+2Bb",
    "ENVID=a+zz",
    "AUTH=<>",
    "XFOO=1",
]
RCPT_PARAMS = [
    "NOTIFY=NEVER",
    "NOTIFY=SUCCESS,FAILURE",
    "NOTIFY=NEVER,SUCCESS",
    "ORCPT=rfc822;a+40b.example",
    "ORCPT=bad",
    "FOO",
]
SIMPLE = [
    "EHLO client.example",
    "HELO client.example",
    "EHLO",
    "ehlo two words",
    "HELX\x08O edited.example",
    "\xff\xfb\x01EHLO telnet.example",
    "DATA",
    "DATA now",
    "RSET",
    "NOOP",
    "VRFY root",
    "EXPN staff",
    "HELP",
    "HELP MAIL",
    "HELP nothing",
    "STARTTLS",
    "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
    "AUTH LOGIN",
    "AUTH CRAM-MD5",
    "*",
    "YWxpY2U=",
    "BDAT 0 LAST",
    "BDAT x",
    "BDAT ²",
    "FOO",
    "",
    "MAIL TO:<x@y.z>",
    "QUIT",
    "GET / HTTP/1.0",
]
BODY_LINES = [
    b"Subject: test",
    b"",
    b".",
    b"..",
    b".hidden",
    b"plain text",
    b"a\nb",
    b"a\rb",
    b"\n.\n",
    b"\r.\r",
    b"x\r\n.\ny",
    b"MAIL FROM:<evil@x.example>",
    b"\xc3\xa9\x00\xff",
]


def encode(text: str) -> bytes:
    # Commands are sent as UTF-8, except the bytes standing for telnet IAC.
    return text.encode("utf-8").replace(b"\xc3\xbf", b"\xff")


OPENINGS = [
    b"",
    b"EHLO client.example\r\n",
    b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n",
    b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n",
]

line_end = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])


@st.composite
def command(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mail", "rcpt", "simple", "simple", "text", "long"]))
    if kind == "mail":
        params = draw(st.lists(st.sampled_from(MAIL_PARAMS), max_size=3))
        text = " ".join(["MAIL FROM:" + draw(st.sampled_from(PATHS)), *params])
    elif kind == "rcpt":
        params = draw(st.lists(st.sampled_from(RCPT_PARAMS), max_size=2))
        text = " ".join(["RCPT TO:" + draw(st.sampled_from(PATHS)), *params])
    elif kind == "simple":
        text = draw(st.sampled_from(SIMPLE))
    elif kind == "text":
        text = draw(st.text(max_size=30).filter(lambda t: "\n" not in t))
    else:
        text = "NOOP " + "L" * draw(st.integers(40, 700))
    return encode(text) + draw(line_end)


# Pieces of message text, joined by proper and improper line ends alike.
message_octets = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(BODY_LINES),
            st.integers(15, 1100).map(lambda n: b"y" * n),
            st.binary(max_size=40),
        ),
        st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""]),
    ),
    max_size=8,
).map(lambda parts: b"".join(text + end for text, end in parts))


@st.composite
def data_body(draw: st.DrawFn) -> bytes:
    body = draw(message_octets)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b"DATA" + draw(line_end) + body + b".\r\n"


@st.composite
def bdat_chunk(draw: st.DrawFn) -> bytes:
    payload = draw(st.binary(max_size=60))
    size = draw(st.one_of(st.just(len(payload)), st.integers(0, 80)))
    last = b" LAST" if draw(st.booleans()) else b""
    return b"BDAT %d%s\r\n" % (size, last) + payload


@st.composite
def session_bytes(draw: st.DrawFn) -> bytes:
    items = draw(
        st.lists(
            st.one_of(
                command(),
                command(),
                command(),
                data_body(),
                bdat_chunk(),
                st.binary(max_size=40),
            ),
            max_size=14,
        )
    )
    # Most sessions open properly so that the later states are reached too.
    opening = draw(st.sampled_from(OPENINGS))
    return opening + b"".join(items)


limits = st.builds(
    Limits,
    max_message_size=st.integers(50, 3000),
    max_command_line=st.sampled_from([64, 512]),
    max_text_line=st.integers(20, 1000),
    max_recipients=st.integers(1, 5),
    max_errors=st.integers(3, 25),
    bare_newline=st.sampled_from(["reject", "normalize"]),
)


@st.composite
def server_options(draw: st.DrawFn) -> dict[str, object]:
    starttls = draw(st.sampled_from([(220, "2.0.0"), (454, "4.7.0")]))
    return {
        "limits": draw(limits),
        "tls_available": draw(st.booleans()),
        "auth_mechanisms": draw(st.sampled_from([(), ("PLAIN", "LOGIN")])),
        "answers": {StartTls: lambda _e: reply(starttls[0], starttls[1], "TLS")},
    }


# -- the checked caller ----------------------------------------------------------------------


class CheckedSession(AcceptAll):
    """The accept-everything caller, checking the engine's invariants at every step."""

    owed: Event | None = None

    def on_event(self, event: Event) -> None:
        conn = self.conn
        if isinstance(event, NEEDS_REPLY):
            # An event that needs a reply never comes while another one is waiting.
            assert self.owed is None
            assert conn.awaiting_reply is event
            # Until it is answered, the engine reads nothing further.
            assert conn.next_event() is PAUSED
            assert conn.awaiting_reply is event
            self.owed = event
        else:
            assert conn.awaiting_reply is None
        if isinstance(event, DataChunk | MessageEnd):
            # Message octets only ever belong to an open transaction.
            assert conn.transaction is not None
        if isinstance(event, MessageEnd):
            assert conn.in_message

    def answer(self, event: Event) -> Reply:
        self.owed = None
        return super().answer(event)

    def check(self) -> None:
        conn = self.conn
        state = conn.state
        assert isinstance(state, State)
        if state in WITHOUT_TRANSACTION:
            assert conn.transaction is None, state
        elif state in WITH_TRANSACTION:
            assert conn.transaction is not None, state
        # In BDAT the envelope may be missing: a refused chunk is still read in full.
        assert conn.closed == (state is State.CLOSED)
        assert conn.in_message == (state in (State.DATA, State.BDAT))
        if conn.transaction is not None:
            assert len(conn.transaction.recipients) <= conn.limits.max_recipients
        if state is State.RCPT:
            assert conn.transaction is not None
            assert conn.transaction.recipients


def run(pieces: list[bytes], options: dict[str, object]) -> tuple[CheckedSession, bytes]:
    """Feed the pieces one read at a time; return the session and everything it wrote."""
    smtp = CheckedSession(**options)  # type: ignore[arg-type]
    output = bytearray()
    for piece in pieces:
        was_closed = smtp.conn.closed
        smtp.conn.receive_data(piece)
        smtp.pump()
        written = smtp.conn.data_to_send()
        if was_closed:
            assert written == b"", "a closed session writes nothing more"
        output += written
    return smtp, bytes(output)


def check_replies(output: bytes) -> None:
    lines = reply_lines(output)  # also asserts that the output ends in CRLF
    replies: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        assert REPLY_LINE.match(line), line
        assert "\r" not in line and "\n" not in line
        if current:
            assert line[:3] == current[0][:3], "one code for all lines of a reply"
        current.append(line)
        if line[3] == " ":
            replies.append(current)
            current = []
    assert current == [], "the last reply is complete"
    for answer in replies:
        code = int(answer[0][:3])
        if code in NO_ENHANCED_CODE or answer[0][4:] == HOST:
            continue  # greeting-like replies and the caller's EHLO/HELO answer
        for line in answer:
            match = ENHANCED.match(line, 4)
            assert match is not None, line
            assert match.group(1) == line[0], line


def events_without_data(smtp: AcceptAll) -> list[Event]:
    return [e for e in smtp.events if not isinstance(e, DataChunk)]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=session_bytes(), options=server_options(), cuts=st.data())
def test_any_session(data: bytes, options: dict[str, object], cuts: st.DataObject) -> None:
    points = cuts.draw(st.lists(st.integers(0, max(len(data), 1)), max_size=12), label="cuts")
    at_once, output = run(whole(data), options)
    check_replies(output)
    if at_once.conn.closed:
        assert reply_lines(output)[-1][:3] in ("221", "421")
    for pieces in (bytewise(data), split_at(data, points)):
        other, other_output = run(pieces, options)
        assert other_output == output
        assert other.messages == at_once.messages
        assert events_without_data(other) == events_without_data(at_once)
        assert other.conn.state is at_once.conn.state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=message_octets, options=server_options(), cuts=st.data())
def test_any_message_body(body: bytes, options: dict[str, object], cuts: st.DataObject) -> None:
    """Any octets after DATA: the message ends at the first CRLF.CRLF, never earlier."""
    data = OPENINGS[-1] + b"DATA\r\n" + body + b"\r\n.\r\nNOOP\r\n"
    points = cuts.draw(st.lists(st.integers(0, len(data)), max_size=10), label="cuts")
    # The CRLF after DATA counts: a body starting with ".\r\n" ends right there.
    ends_early = (b"\r\n" + body + b"\r\n").find(b"\r\n.\r\n") < len(body)
    outputs = set()
    for pieces in (whole(data), bytewise(data), split_at(data, points)):
        smtp, output = run(pieces, options)
        outputs.add(output)
        check_replies(output)
        if ends_early:
            continue
        assert len(smtp.of_type(MessageEnd)) == 1
        assert reply_lines(output)[-1] == "250 2.0.0 Ok"
        for message in smtp.messages:
            # An accepted message holds only whole CRLF lines.
            assert message.count(b"\n") == message.count(b"\r\n") == message.count(b"\r")
            assert message.endswith(b"\r\n") or message == b""
    assert len(outputs) == 1


def dot_stuffed(body: bytes) -> bytes:
    return (b"." if body.startswith(b".") else b"") + body.replace(b"\r\n.", b"\r\n..")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=message_octets, policy=st.sampled_from(["reject", "normalize"]), cuts=st.data())
def test_bdat_and_data_apply_the_same_content_rules(
    body: bytes, policy: str, cuts: st.DataObject
) -> None:
    """The same message through DATA and through BDAT chunks cut anywhere: one verdict,
    one stored message (so a bare CR or LF cannot come in by the door DATA closes)."""
    body += b"\r\n"
    options: dict[str, object] = {"limits": Limits(bare_newline=policy)}
    by_data, _ = run([OPENINGS[-1] + b"DATA\r\n" + dot_stuffed(body) + b".\r\n"], options)
    points = cuts.draw(st.lists(st.integers(0, len(body)), max_size=6), label="cuts")
    chunks = split_at(body, points) or [b""]
    framed = b"".join(b"BDAT %d\r\n" % len(c) + c for c in chunks[:-1])
    framed += b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1]
    by_bdat, output = run([OPENINGS[-1] + framed], options)
    assert by_bdat.messages == by_data.messages
    (end,) = by_data.ends
    if end.problem is not None:
        # Refused at the chunk where a problem showed (its own kind), or at the last one.
        refusals = {"552 5.3.4", "550 5.5.2", "550 5.6.0"}
        assert any(line[:9] in refusals for line in reply_lines(output))
        if len(chunks) == 1:
            assert end.problem.wire_lines()[0] in reply_lines(output)
    for message in by_bdat.messages:
        assert message.count(b"\n") == message.count(b"\r\n") == message.count(b"\r")


def test_checked_session_sees_every_kind_of_event() -> None:
    # The invariants above are only worth as much as the events they were checked on.
    smtp, output = run(
        [
            b"EHLO a.example\r\nFOO\r\nAUTH PLAIN\r\nZm9v\r\n",
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nhi\r\n.\r\n",
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 2 LAST\r\nhi",
            b"RSET\r\nSTARTTLS\r\n",
        ],
        {"tls_available": True, "auth_mechanisms": ("PLAIN",)},
    )
    check_replies(output)
    assert {type(e) for e in smtp.events} == {*NEEDS_REPLY, DataChunk, Reset, CommandRejected}
    assert smtp.conn.state is State.TLS
    assert smtp.messages == [b"hi\r\n", b"hi"]
