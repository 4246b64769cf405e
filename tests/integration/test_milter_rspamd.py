"""rspamd (Debian's 3.4) as a milter: its proxy worker in milter mode, a private instance
(tests/integration/rspamd_server.py), asked by a real ``hato serve`` at every SMTP stage.
The GTUBE test message is refused with rspamd's own reply; a clean message is stored with
the fields rspamd's milter_headers adds."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from rspamd_server import RspamdServer, rspamd_milter_fixture  # noqa: F401

if TYPE_CHECKING:
    from conftest import HatoProcess

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SENDER = "alice@sender.example"
RECIPIENT = "bob@mx.test.example"


def _message(body: str, subject: str) -> bytes:
    return (
        f"From: Alice <{SENDER}>\r\nTo: Bob <{RECIPIENT}>\r\nSubject: {subject}\r\n"
        f"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}"
        f"@sender.example>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def hato(
    rspamd_milter: RspamdServer, module_hato_factory: Callable[..., HatoProcess]
) -> HatoProcess:
    socket = f"inet:127.0.0.1:{rspamd_milter.milter_port}"
    return module_hato_factory(
        "rspamd",
        f'pipeline.milters=[{{ name = "rspamd", socket = "{socket}" }}]',
    )


def test_gtube_is_refused_with_rspamds_reply(hato: HatoProcess) -> None:
    before = len(hato.queue())
    with smtplib.SMTP(hato.host, hato.port, timeout=30) as client:
        client.ehlo("client.example")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(RECIPIENT)[0] == 250
        code, text = client.data(_message(f"A test.\r\n{GTUBE}", "gtube"))
    assert (code, text) == (554, b"5.7.1 Gtube pattern")  # rspamd's REPLYCODE, as it is
    assert len(hato.queue()) == before
    event = hato.wait_for_event("milter_action", milter="rspamd", stage="end", action="replycode")
    assert event["detail"] == "554 5.7.1 Gtube pattern"


def test_a_clean_message_is_stored_with_rspamds_fields(hato: HatoProcess) -> None:
    with smtplib.SMTP(hato.host, hato.port, timeout=30) as client:
        client.ehlo("client.example")
        client.mail(SENDER)
        client.rcpt(RECIPIENT)
        code, text = client.data(_message("Nothing to see here, just a note.", "clean note"))
    assert code == 250, text
    queue_id = text.decode().rsplit(" ", 1)[-1]
    _, stored = hato.message(queue_id)
    header = stored.partition(b"\r\n\r\n")[0]
    assert b"\r\nX-Spamd-Result: default: False" in header, header.decode()
    assert b"\r\nX-Rspamd-Server: " in header, header.decode()
    assert stored.endswith(b"Nothing to see here, just a note.\r\n")
    hato.wait_for_event("milter_action", milter="rspamd", action="addheader", queue_id=queue_id)
