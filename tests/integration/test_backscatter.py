"""Failure reports owed to senders from outside return little: no backscatter.

A forged reverse-path plus a broken forwarding alias would make Hato reflect a whole message
to a bystander. For a message from a client that neither authenticated nor is trusted, the
report returns the header section only, unless the message was small (dsn.outside_full_limit)
and came with RET=FULL. Trusted and authenticated clients get the whole message per RET.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from hato.delivery import MaildirAgent

if TYPE_CHECKING:
    from conftest import HatoProcess

VICTIM = "victim@relay.test.example"  # routed to a closed port: its reports stay queued
BROKEN = "forward@localhost"  # an alias to a local address that has no mailbox
USER, PASSWORD = "alice@localhost", "alices password"
BIG = b"Subject: a hundred lines\r\n\r\n" + b"".join(
    b"line %03d of the body, long enough to be noticed in a reflected copy\r\n" % n
    for n in range(100)
)
SMALL = b"Subject: a short note\r\n\r\nline 000 of a short body\r\n"


def server(hato_factory: Callable[..., HatoProcess], *extra: str) -> HatoProcess:
    hato = hato_factory(accept_all=False, extra_args=extra)
    added = hato.cli("alias", "add", BROKEN, "nobody-here@localhost")
    assert added.returncode == 0, added.stderr
    hato.add_user(USER, PASSWORD)
    hato.start()
    return hato


def report_to(hato: HatoProcess, sender: str, count: int) -> list[bytes]:
    """The bytes of the ``count`` reports queued for ``sender``, oldest first."""

    def reports() -> list[bytes]:
        found = [
            hato.message(m.queue_id)[1]
            for m in hato.queue()
            if m.envelope.reverse_path == "" and m.envelope.recipients[0].address == sender
        ]
        return found if len(found) >= count else []

    return hato.poll(reports, what=f"{count} report(s) to {sender}")  # type: ignore[no-any-return]


def send(port: int, body: bytes, *, ret: str | None = None, sender: str = VICTIM) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example")
        options = [f"RET={ret}"] if ret else []
        assert client.sendmail(sender, [BROKEN], body, mail_options=options) == {}


def returned(report: bytes) -> str:
    if b"Content-Type: message/rfc822" in report:
        assert b"line 000" in report
        return "full"
    assert b"Content-Type: text/rfc822-headers" in report, report
    assert b"line 000" not in report
    return "headers"


def test_outside_clients_get_the_header_section_back(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = server(hato_factory)
    send(hato.port, BIG)  # no RET: would be the whole message up to 1 MiB
    send(hato.port, BIG, ret="FULL")  # asked for, but too large from outside
    send(hato.port, SMALL, ret="FULL")  # small, and asked for: whole
    reports = report_to(hato, VICTIM, 3)
    assert all(b"nobody-here@localhost" in report for report in reports)
    assert sorted(returned(report) for report in reports) == ["full", "headers", "headers"]
    (small,) = [report for report in reports if b"a short note" in report]
    assert returned(small) == "full"


def test_trusted_clients_get_the_whole_message_per_ret(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = server(hato_factory, "-o", 'relay.trusted_networks=["127.0.0.0/8"]')
    send(hato.port, BIG)
    send(hato.port, BIG, ret="HDRS")
    reports = report_to(hato, VICTIM, 2)
    assert sorted(returned(report) for report in reports) == ["full", "headers"]


def test_authenticated_clients_get_the_whole_message(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = server(hato_factory)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", hato.submission_port, timeout=10) as client:
        client.ehlo("client.example")
        client.starttls(context=context)
        client.ehlo("client.example")
        client.login(USER, PASSWORD)
        assert client.sendmail(USER, [BROKEN], BIG) == {}
    agent = MaildirAgent(hato.data_dir / "mailboxes", hostname=hato.hostname)
    local, _, domain = USER.partition("@")
    (report,) = hato.poll(lambda: agent.messages(domain, local), what="the report")
    assert returned(report.path.read_bytes()) == "full"
