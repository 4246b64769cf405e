"""Every refusal lands in the failure class an administrator would name."""

from __future__ import annotations

import pytest

from hato.diag._explain import CATALOG, finding, reply_finding
from hato.smtp import Reply


def reply(code: int, enhanced: str | None, text: str) -> Reply:
    return Reply(code, enhanced, (text,))


@pytest.mark.parametrize(
    ("command", "answer", "code"),
    [
        ("RCPT", reply(550, "5.1.1", "<x@y>: User unknown"), "unknown-user"),
        ("RCPT", reply(550, None, "No such user here"), "unknown-user"),
        ("RCPT", reply(554, "5.7.1", "<x@y>: Relay access denied"), "relay-denied"),
        ("RCPT", reply(550, None, "relaying denied"), "relay-denied"),
        ("RCPT", reply(552, "5.2.2", "Mailbox full"), "mailbox-full"),
        ("RCPT", reply(450, "4.2.0", "Greylisted, try again in 5 minutes"), "greylisted"),
        ("MAIL", reply(530, "5.7.0", "Authentication required"), "auth-required"),
        ("MAIL", reply(553, "5.1.8", "Sender domain does not exist"), "sender-refused"),
        ("MAIL", reply(550, "5.7.1", "SPF fail"), "policy-refused"),
        ("RCPT", reply(421, "4.7.0", "Too many errors"), "closing"),
        ("message", reply(554, "5.6.0", "Content rejected"), "message-refused"),
        ("DATA", reply(503, "5.5.1", "No valid recipients"), "refused"),
    ],
)
def test_reply_classes(command: str, answer: Reply, code: str) -> None:
    found = reply_finding(command, answer, host="mx.example", rcpt="x@y", sender="a@b")
    assert found.code == code
    assert str(answer) in found.title
    assert found.host == "mx.example"


def test_every_entry_fills_in_and_says_what_to_do() -> None:
    for code in CATALOG:
        made = finding(code, host="mx.example", domain="example.com", port=25, timeout=3)
        assert made.title and made.explanation and made.next_steps
        assert "{" not in made.title + made.explanation + made.next_steps, code


def test_severity_can_be_overridden() -> None:
    assert finding("cert-self-signed", host="h").severity == "warn"
    assert finding("cert-self-signed", host="h", severity="fail").severity == "fail"
