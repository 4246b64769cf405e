"""Whatever text goes in, the report that comes out parses and keeps every line sound."""

from __future__ import annotations

import string

from dsn_samples import ARRIVAL, HOST, NOW, STATUS_FOR, lines_are_sound, parse, value
from hypothesis import given, settings
from hypothesis import strategies as st

from hato.dsn import Action, RecipientReport, Report, build_report

SETTINGS = settings(max_examples=150, deadline=None)

# Any text at all: control characters, line breaks of every kind, even lone surrogates.
chars = (
    st.characters()
    | st.characters(categories=["Cs"])
    | st.sampled_from("\r\n\x00\x85\u2028 \\;:<>")
)


def texts(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    # lists, not st.text: st.text drops surrogates from a union of alphabets.
    return st.lists(chars, min_size=min_size, max_size=max_size).map("".join)


anything = texts(0, 300)
some_text = texts(1, 300).filter(str.strip)
long_text = texts(900, 3000).filter(str.strip)
addr_types = some_text.filter(lambda text: ";" not in text)
times = st.floats(min_value=0, max_value=4_000_000_000)
lines = st.lists(
    st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    max_size=20,
)
originals = st.tuples(lines, lines).map(
    lambda parts: (
        b"".join(line + b"\r\n" for line in parts[0])
        + b"\r\n"
        + b"".join(line + b"\r\n" for line in parts[1])
    )
)


@st.composite
def recipients(draw: st.DrawFn, action: Action) -> RecipientReport:
    return RecipientReport(
        final_recipient=draw(some_text),
        original_recipient=draw(st.none() | st.builds("{};{}".format, addr_types, some_text)),
        action=action,
        status=STATUS_FOR[action],
        remote_mta=draw(st.none() | some_text),
        remote_reply=draw(st.none() | some_text | long_text),
        detail=draw(st.none() | some_text),
        last_attempt=draw(st.none() | times),
        will_retry_until=draw(times) if action is Action.DELAYED else None,
    )


@st.composite
def reports(draw: st.DrawFn) -> Report:
    action = draw(st.sampled_from(Action))
    found = draw(st.lists(recipients(action), min_size=1, max_size=4))
    return Report(
        reporting_mta=draw(some_text),
        queue_id=draw(anything),
        original_sender=draw(some_text),
        envid=draw(st.none() | some_text),
        arrival=ARRIVAL,
        recipients=tuple(found),
        return_content=draw(st.sampled_from(["full", "headers", "none"])),
    )


@SETTINGS
@given(reports(), originals)
def test_any_report_parses_with_sound_lines(report: Report, original: bytes) -> None:
    data = build_report(report, original, now=NOW, message_id_domain=HOST)
    lines_are_sound(data)
    parsed = parse(data)
    assert len(parsed.per_recipient) == len(report.recipients)
    for given_recipient, fields in zip(report.recipients, parsed.per_recipient, strict=True):
        assert value(fields, "Action") == given_recipient.action.value
        assert value(fields, "Status") == given_recipient.status
        assert value(fields, "Final-Recipient") is not None
        assert (value(fields, "Original-Recipient") is None) == (
            given_recipient.original_recipient is None
        )
    assert (value(parsed.per_message, "Original-Envelope-Id") is None) == (report.envid is None)
    assert parsed.text().startswith("This is the mail system at ")
    expected_parts = {"full": 3, "headers": 3, "none": 2}[report.return_content]
    assert len(parsed.raw_parts) == expected_parts


# Printable ASCII and every kind of line break: the reply must come out word for word.
reply_text = st.text(alphabet=string.printable + "\x85", min_size=1, max_size=3000).filter(
    str.strip
)


@SETTINGS
@given(reply_text)
def test_a_reply_comes_out_whole_on_one_logical_line(reply: str) -> None:
    one = RecipientReport(
        final_recipient="bob@example.org",
        original_recipient=None,
        action=Action.FAILED,
        status="5.0.0",
        remote_reply=reply,
    )
    report = Report(
        reporting_mta=HOST,
        queue_id="Q1",
        original_sender="alice@example.com",
        envid=None,
        arrival=ARRIVAL,
        recipients=(one,),
        return_content="none",
    )
    data = build_report(report, b"", now=NOW, message_id_domain=HOST)
    lines_are_sound(data)
    fields = parse(data).per_recipient[0]
    assert [name for name, _ in fields] == [
        "Final-Recipient",
        "Action",
        "Status",
        "Diagnostic-Code",
    ]
    diagnostic = value(fields, "Diagnostic-Code")
    assert diagnostic is not None
    assert "".join(diagnostic.split()) == "smtp;" + "".join(reply.split())
