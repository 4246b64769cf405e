"""Milters against a real ``hato serve``: a scripted milter (tests/integration/
milter_server.py) answers each stage as a test says, makes every modification, and fails
in every way a milter can (hangs, closes mid-message, answers garbage, is not there);
each failure costs the milter's default_action, never a stuck session or a lost message.

One scripted milter and three servers for the module: one whose milter's default_action
is tempfail, one accept, one whose milter's port is closed."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from milter_server import (
    ACCEPT,
    CONTINUE,
    DISCARD,
    PROGRESS,
    REJECT,
    TEMPFAIL,
    ScriptedMilter,
    add_header,
    add_recipient,
    change_from,
    change_header,
    delete_recipient,
    insert_header,
    quarantine,
    replace_body,
    reply_code,
)

if TYPE_CHECKING:
    from conftest import HatoProcess

SENDER = "alice@sender.example"
LOCAL = "bob@mx.test.example"
OTHER = "carol@mx.test.example"
MESSAGE = (
    b"From: Alice <alice@sender.example>\r\n"
    b"To: Bob <bob@mx.test.example>\r\n"
    b"Subject: Hello milter\r\n"
    b"X-Old: one\r\n"
    b"\r\n"
    b"The body.\r\n"
)


def _milter(name: str, socket_text: str, action: str) -> str:
    return (
        f'pipeline.milters=[{{ name = "{name}", socket = "{socket_text}",'
        f' default_action = "{action}", connect_timeout = 1.0, command_timeout = 1.0,'
        " message_timeout = 2.0 }]"
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedMilter]:
    with ScriptedMilter() as milter:
        yield milter


@pytest.fixture(scope="module")
def servers(
    scripted: ScriptedMilter, module_hato_factory: Callable[..., HatoProcess]
) -> dict[str, HatoProcess]:
    return {
        "tempfail": module_hato_factory(
            "tempfail", _milter("scripted", scripted.socket, "tempfail")
        ),
        "accept": module_hato_factory("accept", _milter("scripted", scripted.socket, "accept")),
        "refused": module_hato_factory(
            "refused", _milter("gone", f"inet:127.0.0.1:{_closed_port()}", "tempfail")
        ),
    }


@pytest.fixture
def milter(scripted: ScriptedMilter) -> ScriptedMilter:
    scripted.reset()
    return scripted


def _send(
    hato: HatoProcess, recipients: list[str], message: bytes = MESSAGE
) -> tuple[dict[str, tuple[int, bytes]], str]:
    """Send one message; the refused recipients and the queue ID of the 250."""
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.example")
        refused = {}
        code, _ = client.mail(SENDER)
        assert code == 250
        for recipient in recipients:
            code, text = client.rcpt(recipient)
            if code != 250:
                refused[recipient] = (code, text)
        code, text = client.data(message)
        assert code == 250, (code, text)
        return refused, text.decode().rsplit(" ", 1)[-1]


def _data_refused(hato: HatoProcess, recipients: list[str]) -> tuple[int, bytes]:
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.mail(SENDER)[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        answer = client.data(MESSAGE)
        assert client.noop()[0] == 250  # the session goes on
        return answer


def _stored(hato: HatoProcess, queue_id: str) -> tuple[object, bytes]:
    return hato.message(queue_id)


def _macros(milter: ScriptedMilter, stage: bytes) -> dict[str, str]:
    """The macros sent before the command ``stage`` in the last connection."""
    found: dict[str, str] = {}
    for data in milter.data(b"D"):
        if data[:1] == stage:
            parts = data[1:].split(b"\0")[:-1]
            found.update(
                {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts), 2)}
            )
    return found


# -- every stage, in order ------------------------------------------------------------------


def test_each_stage_is_sent_in_order_with_its_macros(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    hato = servers["tempfail"]
    refused, queue_id = _send(hato, [LOCAL])
    assert refused == {}
    hato.poll(lambda: b"Q" in milter.commands(), what="QUIT to the milter")
    letters = [c for c in milter.commands() if c != b"D"]
    assert letters[:5] == [b"O", b"C", b"H", b"M", b"R"], letters
    assert letters[5] == b"T" and letters[-3:] == [b"B", b"E", b"Q"], letters
    assert letters.count(b"L") >= 5  # Received and the message's four fields
    connect = milter.data(b"C")[0]
    assert connect.startswith(b"unknown\x004") and connect.endswith(b"127.0.0.1\0")
    assert milter.data(b"M")[0] == f"<{SENDER}>\0".encode()
    assert milter.data(b"R")[0] == f"<{LOCAL}>\0".encode()
    assert milter.data(b"H")[0] == b"client.example\0"
    headers = [d.split(b"\0")[:2] for d in milter.data(b"L")]
    assert [b"Subject", b"Hello milter"] in headers
    assert milter.data(b"B") == [b"The body.\r\n"]
    assert _macros(milter, b"C")["j"] == "mx.test.example"
    assert _macros(milter, b"C")["{client_addr}"] == "127.0.0.1"
    assert _macros(milter, b"M")["{mail_addr}"] == SENDER
    assert _macros(milter, b"R")["{rcpt_addr}"] == LOCAL
    assert _macros(milter, b"E")["i"] == queue_id


def test_two_messages_share_the_session_connection(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    hato = servers["tempfail"]
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.example")
        for _ in range(2):
            client.sendmail(SENDER, [LOCAL], MESSAGE)
        client.rset()
    assert len(milter.connections) == 1
    assert milter.commands().count(b"E") == 2


# -- verdicts at their stage ------------------------------------------------------------------


def test_reject_at_rcpt_refuses_that_recipient_only(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    hato = servers["tempfail"]
    milter.replies[b"R"] = lambda data: [REJECT if data.startswith(b"<carol@") else CONTINUE]
    refused, queue_id = _send(hato, [LOCAL, OTHER])
    assert refused == {OTHER: (550, b"5.7.1 Command rejected")}
    stored, _ = hato.message(queue_id)
    assert [r.address for r in stored.envelope.recipients] == [LOCAL]
    assert hato.wait_for_event("milter_action", stage="rcpt", action="reject")


def test_tempfail_at_mail_refuses_the_transaction(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"M"] = [TEMPFAIL]
    hato = servers["tempfail"]
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.example")
        code, text = client.mail(SENDER)
        assert (code, text) == (451, b"4.7.1 Service unavailable - try again later")
        milter.replies.clear()
        assert client.mail(SENDER)[0] == 250  # the next transaction is its own


def test_replycode_at_the_end_is_the_reply(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"E"] = [PROGRESS, reply_code("554 5.7.1 Gtube pattern")]
    hato = servers["tempfail"]
    before = len(hato.queue())
    assert _data_refused(hato, [LOCAL]) == (554, b"5.7.1 Gtube pattern")
    assert len(hato.queue()) == before


def test_a_replycode_that_is_not_4xx_or_5xx_costs_the_default(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"E"] = [reply_code("250 fine")]
    code, _ = _data_refused(servers["tempfail"], [LOCAL])
    assert code == 451


def test_discard_is_accepted_and_stored_nowhere(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"E"] = [DISCARD]
    hato = servers["tempfail"]
    _, queue_id = _send(hato, [LOCAL])
    assert queue_id not in hato.messages()
    assert hato.wait_for_event("milter_action", stage="end", action="discard")


def test_discard_at_rcpt_discards_the_message(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"R"] = [DISCARD]
    hato = servers["tempfail"]
    _, queue_id = _send(hato, [LOCAL])
    assert queue_id not in hato.messages()


def test_quarantine_stores_into_junk(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"E"] = [quarantine("looks like spam"), CONTINUE]
    hato = servers["tempfail"]
    _, queue_id = _send(hato, [LOCAL])
    stored, _ = hato.message(queue_id)
    assert stored.envelope.folder == "Junk"


def test_accept_at_connect_skips_the_rest_of_the_session(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"C"] = [ACCEPT]
    _, queue_id = _send(servers["tempfail"], [LOCAL])
    assert b"M" not in milter.commands() and b"E" not in milter.commands()
    assert queue_id in servers["tempfail"].messages()


def test_reject_at_connect_is_a_554_greeting(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"C"] = [REJECT]
    hato = servers["tempfail"]
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(hato.host, hato.port, timeout=10)
    assert refused.value.smtp_code == 554


# -- modifications ----------------------------------------------------------------------------


def test_every_modification_reaches_what_is_stored(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"E"] = [
        add_header("X-Spam-Status", "No, score=0.1"),
        insert_header(0, "X-Top", "first"),
        change_header(1, "Subject", "[scanned] Hello milter"),
        change_header(1, "X-Old", ""),
        change_from("<bounce@sender.example>"),
        add_recipient("<dave@mx.test.example>"),
        delete_recipient(f"<{OTHER}>"),
        replace_body(b"A new body.\nOn two lines.\r\n"),
        replace_body(b"And a second chunk.\r\n"),
        CONTINUE,
    ]
    hato = servers["tempfail"]
    _, queue_id = _send(hato, [LOCAL, OTHER])
    stored, data = hato.message(queue_id)
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    assert lines[0] == b"X-Top: first"
    assert lines[1].startswith(b"Received: ")
    assert b"Subject: [scanned] Hello milter" in lines
    assert not any(line.startswith(b"X-Old") for line in lines)
    assert lines[-1] == b"X-Spam-Status: No, score=0.1"
    assert body == b"A new body.\r\nOn two lines.\r\nAnd a second chunk.\r\n"
    assert stored.envelope.reverse_path == "bounce@sender.example"
    assert [r.address for r in stored.envelope.recipients] == [LOCAL, "dave@mx.test.example"]
    for action in (
        "addheader",
        "insheader",
        "chgheader",
        "delheader",
        "chgfrom",
        "addrcpt",
        "delrcpt",
        "replbody",
    ):
        assert hato.wait_for_event("milter_action", queue_id=queue_id, action=action), action


def test_a_modification_not_negotiated_costs_the_default(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.actions = 0x01  # add headers only
    milter.replies[b"E"] = [change_from("<other@sender.example>"), CONTINUE]
    code, _ = _data_refused(servers["tempfail"], [LOCAL])
    assert code == 451


def test_every_recipient_deleted_is_accepted_and_kept_nowhere(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.replies[b"E"] = [delete_recipient(f"<{LOCAL}>"), CONTINUE]
    hato = servers["tempfail"]
    _, queue_id = _send(hato, [LOCAL])
    assert queue_id not in hato.messages()


def test_skipped_steps_are_not_sent(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.protocol = 0x02 | 0x20 | 0x10 | 0x8000  # no HELO, headers, body; RCPT unanswered
    _, queue_id = _send(servers["tempfail"], [LOCAL])
    letters = milter.commands()
    assert b"H" not in letters and b"L" not in letters and b"B" not in letters
    assert b"R" in letters and b"E" in letters
    assert queue_id in servers["tempfail"].messages()


# -- a dead milter ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["hang", "close", "garbage"])
def test_a_milter_failing_mid_message_costs_a_tempfail(
    servers: dict[str, HatoProcess], milter: ScriptedMilter, how: str
) -> None:
    setattr(milter, how, b"E")
    hato = servers["tempfail"]
    before = len(hato.queue())
    code, _ = _data_refused(hato, [LOCAL])
    assert code == 451
    assert len(hato.queue()) == before
    assert hato.wait_for_event("milter_action", action="failed: default_action tempfail")


@pytest.mark.parametrize("how", ["hang", "close", "garbage"])
def test_a_milter_failing_mid_message_costs_an_accept(
    servers: dict[str, HatoProcess], milter: ScriptedMilter, how: str
) -> None:
    setattr(milter, how, b"E")
    hato = servers["accept"]
    _, queue_id = _send(hato, [LOCAL])
    _, data = hato.message(queue_id)
    assert data.endswith(MESSAGE)


def test_a_milter_failing_at_mail_defers_the_transaction(
    servers: dict[str, HatoProcess], milter: ScriptedMilter
) -> None:
    milter.garbage = b"M"
    hato = servers["tempfail"]
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.mail(SENDER)[0] == 451
        assert client.mail(SENDER)[0] == 451  # dead for the session: the same default
        assert client.noop()[0] == 250


def test_an_unreachable_milter_defers_mail_and_the_session_goes_on(
    servers: dict[str, HatoProcess],
) -> None:
    hato = servers["refused"]
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        assert client.ehlo("client.example")[0] == 250
        code, text = client.mail(SENDER)
        assert (code, text) == (451, b"4.7.1 Service unavailable - try again later")
        assert client.noop()[0] == 250
    found = hato.wait_for_event("milter_action", milter="gone", stage="connect")
    assert "cannot connect" in found["detail"]


def test_replies_in_any_split(servers: dict[str, HatoProcess], milter: ScriptedMilter) -> None:
    """A modification and the final answer in one write are read by their lengths."""
    milter.replies[b"E"] = lambda _data: [add_header("X-Bytes", "caf\u00e9") + CONTINUE]
    _, queue_id = _send(servers["tempfail"], [LOCAL])
    _, data = servers["tempfail"].message(queue_id)
    assert "X-Bytes: café\r\n".encode() in data
