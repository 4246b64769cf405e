"""Postfix as Hato's real peer, both directions: relay, delivery reports and refusals.

Hato listens on 127.0.0.7 with hato.test as its local domain and relays pf.test to a
private Postfix on 127.0.0.6 (``postfix_server.py``), whose transport map sends hato.test
back to Hato; neither looks anything up in DNS. Postfix stores Maildir files with LF line
ends, so a body sent with CRLF is compared with its LF form there.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
import smtplib
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from postfix_server import PEER_DOMAIN, Postfix, postfix_fixture  # noqa: F401 - provides `postfix`

from hato.delivery import MaildirAgent

if TYPE_CHECKING:
    from conftest import HatoProcess

SENDER = f"alice@{PEER_DOMAIN}"  # a Hato user: reports from either side come back to her
TIMEOUT = 20.0  # for a message to cross one hop; a healthy run takes well under a second


@pytest.fixture
def hato_peer(postfix: Postfix, hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    """Hato where Postfix's transport map points, relaying pf.test to Postfix."""
    process = hato_factory(
        name="hato",
        accept_all=False,
        listen=postfix.peer_listen,
        extra_args=(
            "-o",
            'relay.trusted_networks=["127.0.0.0/8"]',
            "-o",
            f'relay.transports=["pf.test {postfix.host}:{postfix.port}"]',
            "-o",
            f'server.local_domains=["{PEER_DOMAIN}"]',
        ),
    )
    # The account commands read no -o options: the domain becomes local in the store too.
    # Before the first start they need the data directory made for them.
    process.data_dir.mkdir(parents=True, exist_ok=True)
    for command in (
        ("domain", "add", PEER_DOMAIN),
        ("user", "add", SENDER),
        ("user", "add", f"carol@{PEER_DOMAIN}"),
    ):
        done = process.cli(*command)
        assert done.returncode == 0, done.stdout + done.stderr
    process.start()
    return process


def hato_mailbox(hato: HatoProcess, address: str) -> list[bytes]:
    local_part, _, domain = address.partition("@")
    agent = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname)
    return [message.path.read_bytes() for message in agent.messages(domain, local_part)]


def header_block(message: bytes, newline: bytes) -> list[bytes]:
    """The header fields of ``message`` in order, each unfolded to one line."""
    head = message.split(newline + newline, 1)[0]
    return [field.replace(newline, b"") for field in re.split(newline + rb"(?![ \t])", head)]


# Who stamped a Received field: "by HOST (SOFTWARE)", as a regular expression.
BY_POSTFIX = rb"pf\.test \(Postfix\)"
BY_HATO = rb"mx\.test\.example \(Hato [^)]+\)"


def received_id(field: bytes, client: bytes, by: bytes, recipient: str) -> str:
    """The queue ID in a Received field that must read, unfolded, exactly
    ``from CLIENT by BY with ESMTP id ID for <RECIPIENT>; DATE`` (CLIENT and BY are regexes).
    """
    found = re.fullmatch(
        rb"Received: from " + client + rb"\tby " + by + rb" with ESMTP id (\w+)"
        rb"\tfor <" + re.escape(recipient.encode()) + rb">; .+",
        field,
    )
    assert found is not None, field
    return found[1].decode()


def report_parts(raw: bytes) -> tuple[email.message.Message, list[email.message.Message]]:
    """A multipart/report's per-message fields and its per-recipient field groups."""
    report = email.message_from_bytes(raw, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report", raw[:600]
    assert report.get_param("report-type") == "delivery-status", report["Content-Type"]
    (status,) = (p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    payload = status.get_payload()
    assert isinstance(payload, list), status
    groups = [group for group in payload if isinstance(group, email.message.Message)]
    assert len(groups) == len(payload) >= 2, status
    return groups[0], groups[1:]


def unfolded(value: str) -> str:
    """A field value as one line: both MTAs fold long ones at a space, with their own indent."""
    return " ".join(str(value).split())


def body_for(recipient: str, subject: str) -> bytes:
    """A message whose body has what transports like to change: a leading dot, spaces."""
    return (
        f"From: Sender <sender@example.org>\r\nTo: <{recipient}>\r\nSubject: {subject}\r\n"
        f"Date: Tue, 1 Sep 2026 10:00:00 +0900\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n\r\n"
        "Hello,\r\n.a line that starts with a dot\r\n..and one with two\r\n"
        "trailing spaces   \r\n\r\nbye\r\n"
    ).encode()


def test_hato_relays_to_postfix_which_reports_success(
    postfix: Postfix, hato_peer: HatoProcess
) -> None:
    body = body_for("bob@pf.test", "hato to postfix")
    with smtplib.SMTP(hato_peer.host, hato_peer.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.has_extn("dsn")
        refused = client.sendmail(
            SENDER,
            ["bob@pf.test"],
            body,
            mail_options=["ENVID=hato-envid-1", "RET=HDRS"],
            rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@pf.test"],
        )
        assert refused == {}

    (stored,) = postfix.wait_for_mailbox("bob")
    assert stored.endswith(body.replace(b"\r\n", b"\n")), stored
    # Newest trace first: Postfix's delivery fields and Received, then Hato's signature
    # (the sender's domain is Hato's, with the key `domain add` made), then its Received.
    fields = header_block(stored, b"\n")
    assert fields[:3] == [
        f"Return-Path: <{SENDER}>".encode(),
        b"X-Original-To: bob@pf.test",
        b"Delivered-To: bob@pf.test",
    ], fields
    postfix_id = received_id(
        fields[3], rb"mx\.test\.example \(unknown \[127\.[0-9.]+\]\)", BY_POSTFIX, "bob@pf.test"
    )
    assert fields[4].startswith(
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=" + PEER_DOMAIN.encode() + b";"
    ), fields[4]
    hato_id = received_id(
        fields[5], rb"client\.test \(unknown \[127\.0\.0\.1\]\)", BY_HATO, "bob@pf.test"
    )

    # Hato names Postfix (its next hop) and the queue ID Postfix answered with.
    delivered = hato_peer.wait_for_event("delivered", recipient="bob@pf.test")
    assert delivered["queue_id"] == hato_id
    assert delivered["detail"] == f"{postfix.host} said: 250 2.0.0 Ok: queued as {postfix_id}"
    postfix.wait_for_log(rf"{postfix_id}: to=<bob@pf\.test>, relay=virtual, .*status=sent")

    # NOTIFY=SUCCESS went along (with ENVID and ORCPT), so the success report comes from
    # Postfix, through its transport map back to Hato, into the sender's mailbox; Hato sends
    # no "relayed" report of its own (RFC 3461 4.1: the next hop offered DSN).
    postfix.wait_for_log(rf"{postfix_id}: sender delivery status notification: \w+")
    (raw,) = hato_peer.poll(
        lambda: hato_mailbox(hato_peer, SENDER), timeout=TIMEOUT, what="the success report"
    )
    assert hato_peer.events("report") == []
    report_fields = header_block(raw, b"\r\n")
    assert report_fields[0] == b"Return-Path: <>", report_fields
    assert re.match(
        rb"Received: from pf\.test \(unknown \[127\.0\.0\.6\]\)\tby mx\.test\.example ",
        report_fields[2],
    ), report_fields
    per_message, (recipient,) = report_parts(raw)
    assert per_message["Reporting-MTA"] == "dns; pf.test"
    assert per_message["Original-Envelope-Id"] == "hato-envid-1"
    assert recipient["Final-Recipient"] == "rfc822; bob@pf.test"
    assert recipient["Original-Recipient"].replace(" ", "") == "rfc822;Bob@pf.test"
    assert recipient["Action"] == "delivered"
    assert recipient["Status"] == "2.0.0"
    assert b"Message-ID: <hato-to-postfix@example.org>" in raw


def test_postfix_relays_to_hato(postfix: Postfix, hato_peer: HatoProcess) -> None:
    body = body_for("carol@hato.test", "postfix to hato")
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.sendmail("dave@pf.test", ["carol@hato.test"], body) == {}

    (stored,) = hato_peer.poll(
        lambda: hato_mailbox(hato_peer, "carol@hato.test"), timeout=TIMEOUT, what="carol's mail"
    )
    assert stored.endswith(body), stored
    fields = header_block(stored, b"\r\n")
    assert fields[:2] == [b"Return-Path: <dave@pf.test>", b"Delivered-To: carol@hato.test"]
    hato_id = received_id(
        fields[2], rb"pf\.test \(unknown \[127\.0\.0\.6\]\)", BY_HATO, "carol@hato.test"
    )
    postfix_id = received_id(
        fields[3], rb"client\.test \(unknown \[127\.[0-9.]+\]\)", BY_POSTFIX, "carol@hato.test"
    )

    queued = hato_peer.wait_for_event("queued", queue_id=hato_id)
    assert queued["client_ip"] == postfix.host
    assert queued["reverse_path"] == "dave@pf.test"
    postfix.wait_for_log(
        rf"{postfix_id}: to=<carol@hato\.test>, relay={re.escape(hato_peer.host)}\[[0-9.]+\]:"
        rf"{hato_peer.port}, .*status=sent \(250 2\.0\.0 Ok: queued as {hato_id}\)"
    )
    postfix.wait_for_empty_queue()


def test_hato_refusal_becomes_postfix_bounce(postfix: Postfix, hato_peer: HatoProcess) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as client:
        client.ehlo("client.test")
        refused = client.sendmail(
            "dave@pf.test", ["nobody@hato.test"], body_for("nobody@hato.test", "to nobody")
        )
        assert refused == {}  # Postfix relays without asking Hato first

    rejected = hato_peer.wait_for_event("reject", client_ip=postfix.host)
    assert rejected["reply"].startswith("550 5.1.1 "), rejected
    bounced = postfix.wait_for_log(
        r"(\w+): to=<nobody@hato\.test>, relay=.*, dsn=5\.1\.1, status=bounced "
        r"\(host \S+ said: (.+) \(in reply to RCPT TO command\)\)"
    )
    assert bounced[2] == rejected["reply"]
    postfix.wait_for_log(rf"{bounced[1]}: sender non-delivery notification: \w+")

    # Postfix's bounce goes to its own user, the sender, and carries Hato's words.
    (raw,) = postfix.wait_for_mailbox("dave")
    per_message, (recipient,) = report_parts(raw)
    assert per_message["Reporting-MTA"] == "dns; pf.test"
    assert recipient["Final-Recipient"] == "rfc822; nobody@hato.test"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Remote-MTA"] == f"dns; {hato_peer.host}"
    assert unfolded(recipient["Diagnostic-Code"]) == f"smtp; {rejected['reply']}"
    assert hato_mailbox(hato_peer, "nobody@hato.test") == []
    postfix.wait_for_empty_queue()


def test_postfix_refusal_becomes_hato_report(postfix: Postfix, hato_peer: HatoProcess) -> None:
    with smtplib.SMTP(hato_peer.host, hato_peer.port, timeout=10) as client:
        client.ehlo("client.test")
        refused = client.sendmail(SENDER, ["nobody@pf.test"], body_for("nobody@pf.test", "lost"))
        assert refused == {}  # Hato queues first, then meets the refusal

    refusal = postfix.wait_for_log(
        r"NOQUEUE: reject: RCPT from \S+: (550 5\.1\.1 <nobody@pf\.test>: [^;]+); "
        rf"from=<{re.escape(SENDER)}> to=<nobody@pf\.test>"
    )
    postfix_reply = refusal[1]
    assert "User unknown in virtual mailbox table" in postfix_reply
    failed = hato_peer.wait_for_event("failed", recipient="nobody@pf.test")
    assert failed["status"] == "5.1.1"
    assert failed["detail"] == f"{postfix.host} said: {postfix_reply}"

    (raw,) = hato_peer.poll(
        lambda: hato_mailbox(hato_peer, SENDER), timeout=TIMEOUT, what="Hato's report"
    )
    assert header_block(raw, b"\r\n")[0] == b"Return-Path: <>"
    per_message, (recipient,) = report_parts(raw)
    assert per_message["Reporting-MTA"] == f"dns; {hato_peer.hostname}"
    assert recipient["Final-Recipient"] == "rfc822; nobody@pf.test"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Remote-MTA"] == f"dns; {postfix.host}"
    assert unfolded(recipient["Diagnostic-Code"]) == f"smtp; {postfix_reply}"
    assert postfix.mailbox("nobody") == []
    assert postfix.queue() == []
