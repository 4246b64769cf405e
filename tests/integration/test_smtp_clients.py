"""Real client libraries (smtplib, aiosmtplib) against a real ``hato serve``: what they send
is what the spool holds, byte for byte, behind the Received header Hato prepends."""

from __future__ import annotations

import asyncio
import email.message
import json
import re
import smtplib
from typing import TYPE_CHECKING

import aiosmtplib

if TYPE_CHECKING:
    from conftest import HatoProcess

QUEUED = re.compile(rb"^2\.0\.0 Ok: queued as (\S+)$")
CONCURRENT_SESSIONS = 200


def queue_id_of(reply: bytes) -> str:
    match = QUEUED.match(reply)
    assert match is not None, reply
    return match.group(1).decode()


def stored_content(hato: HatoProcess, queue_id: str) -> tuple[bytes, bytes]:
    """The Received header and the rest of a queued message."""
    message, stored = hato.message(queue_id)
    assert message.size == len(stored)
    return hato.split_received(stored)


def test_smtplib_message_is_stored_whole(hato: HatoProcess) -> None:
    content = (
        b"From: Admin <admin@test.com>\r\n"
        b"To: User <user@localhost>\r\n"
        b"Subject: whole\r\n"
        b"Message-ID: <whole@test.com>\r\n"
        b"\r\n"
        b"First line.\r\n"
        b".A line that starts with a dot (stuffed on the wire, not in the spool).\r\n"
        b"..two dots\r\n"
        b"\r\n"
        b"Last line, with trailing spaces   \r\n"
    )
    with smtplib.SMTP("127.0.0.1", hato.port, local_hostname="client.example") as client:
        client.ehlo()
        assert client.mail("admin@test.com") == (250, b"2.1.0 Ok")
        assert client.rcpt("user@localhost") == (250, b"2.1.5 Ok")
        code, reply = client.data(content)
    assert code == 250
    queue_id = queue_id_of(reply)

    [message] = hato.queue()
    assert message.queue_id == queue_id
    assert message.envelope.reverse_path == "admin@test.com"
    assert [r.address for r in message.envelope.recipients] == ["user@localhost"]
    assert message.envelope.helo == "client.example"
    received, rest = stored_content(hato, queue_id)
    assert rest == content
    assert received.startswith(b"Received: from client.example (")
    assert b"[127.0.0.1])" in received
    assert b"by mx.test.example (Hato " in received
    assert f"with ESMTP id {queue_id}".encode() in received
    assert b"for <user@localhost>;" in received


def test_smtplib_sendmail(hato: HatoProcess) -> None:
    content = b"Subject: sendmail\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", hato.port) as client:
        refused = client.sendmail("admin@test.com", ["user@localhost"], content)
    assert refused == {}
    [message] = hato.queue()
    assert stored_content(hato, message.queue_id)[1] == content
    # sendmail declares SIZE=; it was the exact message size.
    mail = hato.wait_for_event("queued", queue_id=message.queue_id)
    assert mail["size"] == message.size


def test_smtplib_8bitmime(hato: HatoProcess) -> None:
    content = "Subject: Grüße\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nÄpfel und Öl\r\n"
    raw = content.encode("utf-8")
    with smtplib.SMTP("127.0.0.1", hato.port) as client:
        client.ehlo()
        assert client.has_extn("8bitmime")
        refused = client.sendmail(
            "admin@test.com", ["user@localhost"], raw, mail_options=["BODY=8BITMIME"]
        )
    assert refused == {}
    [message] = hato.queue()
    assert message.envelope.body == "8BITMIME"
    assert stored_content(hato, message.queue_id)[1] == raw


def test_smtplib_smtputf8_send_message(hato: HatoProcess) -> None:
    message = email.message.EmailMessage()
    message["From"] = "jörg@test.com"
    message["To"] = "用户@localhost"
    message["Subject"] = "SMTPUTF8 ✓"
    message.set_content("Grüße\n")
    with smtplib.SMTP("127.0.0.1", hato.port) as client:
        client.ehlo()
        assert client.has_extn("smtputf8")
        # send_message adds SMTPUTF8 and BODY=8BITMIME itself for a non-ASCII address.
        refused = client.send_message(message)
    assert refused == {}
    [queued] = hato.queue()
    envelope = queued.envelope
    assert envelope.smtputf8
    assert envelope.reverse_path == "jörg@test.com"
    assert [r.address for r in envelope.recipients] == ["用户@localhost"]
    received, rest = stored_content(hato, queued.queue_id)
    assert b"with UTF8SMTP id" in received
    assert "for <用户@localhost>".encode() in received
    assert "To: 用户@localhost\r\n".encode() in rest
    assert "Subject: SMTPUTF8 ✓\r\n".encode() in rest


def test_smtplib_smtputf8_mail_option(hato: HatoProcess) -> None:
    raw = "From: jörg@test.com\r\nSubject: ü\r\n\r\nbody ü\r\n".encode()
    with smtplib.SMTP("127.0.0.1", hato.port) as client:
        refused = client.sendmail(
            "jörg@test.com", ["用户@localhost"], raw, mail_options=["SMTPUTF8", "BODY=8BITMIME"]
        )
    assert refused == {}
    [queued] = hato.queue()
    assert queued.envelope.smtputf8
    assert queued.envelope.body == "8BITMIME"
    assert [r.address for r in queued.envelope.recipients] == ["用户@localhost"]
    assert stored_content(hato, queued.queue_id)[1] == raw


def test_dsn_parameters_are_kept_in_the_envelope(hato: HatoProcess) -> None:
    with smtplib.SMTP("127.0.0.1", hato.port) as client:
        client.ehlo()
        assert client.has_extn("dsn")
        assert client.mail("a@b.example", ["RET=HDRS", "ENVID=QQ314159"])[0] == 250
        code, _ = client.rcpt("u@localhost", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;u@localhost"])
        assert code == 250
        code, _ = client.rcpt("v@localhost", ["NOTIFY=NEVER", "ORCPT=rfc822;V+2Bx@b.example"])
        assert code == 250
        code, reply = client.data(b"Subject: dsn\r\n\r\nbody\r\n")
    assert code == 250
    queued, _ = hato.message(queue_id_of(reply))
    envelope = queued.envelope
    assert envelope.ret == "HDRS"
    assert envelope.envid == "QQ314159"
    first, second = envelope.recipients
    assert (first.address, first.notify, first.orcpt) == (
        "u@localhost",
        ("SUCCESS", "FAILURE"),
        "rfc822;u@localhost",
    )
    # ORCPT is xtext: "+2B" is "+".
    assert (second.address, second.notify, second.orcpt) == (
        "v@localhost",
        ("NEVER",),
        "rfc822;V+x@b.example",
    )
    # One state per recipient: queued, or deferred once the queue has tried it.
    assert len(queued.states) == 2
    assert set(queued.states) <= {"queued", "deferred"}

    shown = hato.cli("queue", "show", queued.queue_id, "--json")
    assert shown.returncode == 0, shown.stderr
    as_json = json.loads(shown.stdout)["envelope"]
    assert (as_json["ret"], as_json["envid"]) == ("HDRS", "QQ314159")
    assert [r["notify"] for r in as_json["recipients"]] == [["SUCCESS", "FAILURE"], ["NEVER"]]


def _message(index: int) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = "admin@test.com"
    message["To"] = f"user{index}@localhost"
    message["Subject"] = f"concurrent {index}"
    message["Message-ID"] = f"<concurrent-{index}@test.com>"
    message.set_content(f"message number {index}\n")
    return message


def test_aiosmtplib_send_message(hato: HatoProcess) -> None:
    message = _message(0)
    responses, reply = asyncio.run(
        # aiosmtplib takes the STARTTLS offered; the test server's certificate is self-signed.
        aiosmtplib.send(
            message, hostname="127.0.0.1", port=hato.port, timeout=30, validate_certs=False
        )
    )
    assert responses == {}  # the recipients refused: none
    queue_id = queue_id_of(reply.encode())
    received, rest = stored_content(hato, queue_id)
    assert f"with ESMTPS id {queue_id}".encode() in received
    assert b"Message-ID: <concurrent-0@test.com>\r\n" in rest
    assert b"message number 0\r\n" in rest


def test_200_concurrent_sessions(hato: HatoProcess) -> None:
    async def send_all() -> list[tuple[dict[str, aiosmtplib.SMTPResponse], str]]:
        return await asyncio.gather(
            *(
                # Plaintext: this is about concurrent sessions, not 200 handshakes. Four
                # source addresses, 50 sessions each: policy.max_connections is 50 per IP.
                aiosmtplib.send(
                    _message(i),
                    hostname="127.0.0.1",
                    port=hato.port,
                    timeout=60,
                    start_tls=False,
                    source_address=(f"127.0.0.{1 + i % 4}", 0),
                )
                for i in range(CONCURRENT_SESSIONS)
            )
        )

    results = asyncio.run(send_all())
    assert all(refused == {} for refused, _ in results)
    queue_ids = [queue_id_of(reply.encode()) for _, reply in results]
    assert len(set(queue_ids)) == CONCURRENT_SESSIONS

    stored = hato.messages()
    assert sorted(stored) == sorted(queue_ids)
    seen: dict[str, str] = {}
    for queue_id, data in stored.items():
        found = re.search(rb"^Message-ID: <(concurrent-\d+)@test.com>\r$", data, re.MULTILINE)
        assert found is not None, data[:300]
        seen[found.group(1).decode()] = queue_id
    # Every message exactly once, and under the queue ID its own session was told.
    assert seen == {f"concurrent-{i}": queue_ids[i] for i in range(CONCURRENT_SESSIONS)}
