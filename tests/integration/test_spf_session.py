"""SPF at MAIL FROM in a real Hato, against a real DNS server: the ``spf`` access rule
refuses what it names, SPF fail alone refuses nothing, and the message's filters see the
result the session found."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import aiosmtplib

from dns_server import DnsServer, dns_server_fixture  # noqa: F401
from hato.accounts import AccountStore
from hato.app import Hato
from hato.config import load_settings
from hato.mailauth import SpfResult
from hato.pipeline import ACCEPT, Message, Stage, Verdict
from hato.spool import Envelope, Origin

if TYPE_CHECKING:
    from conftest import HatoProcess

MESSAGE = b"From: <a@example.org>\r\nSubject: spf\r\n\r\nHello.\r\n"


def publish(dns_server: DnsServer) -> None:
    dns_server.add("fail.test", "TXT", '"v=spf1 -all"')
    dns_server.add("pass.test", "TXT", '"v=spf1 ip4:127.0.0.1 -all"')


def test_spf_rule_refuses_fail_and_accepts_pass(
    hato_factory: Callable[..., HatoProcess], dns_server: DnsServer
) -> None:
    publish(dns_server)
    hato = hato_factory(
        config='[[policy.mail]]\naction = "reject"\nspf = ["fail"]\nname = "spf-fail"\n',
        extra_args=(
            "-o",
            f'dns.nameservers=["{dns_server.address}"]',
            "-o",
            "mailauth.check=true",
        ),
    )
    hato.start()
    with smtplib.SMTP(hato.host, hato.port, timeout=10) as client:
        client.ehlo("client.example")
        code, text = client.mail("someone@fail.test")
        assert code == 554, text
        assert client.mail("someone@pass.test")[0] == 250
        assert client.rcpt("anyone@localhost")[0] == 250
    hato.wait_for_event("reject", rule="spf-fail")
    refused = hato.events("reject", rule="spf-fail")
    assert refused and refused[0]["reason"] == "policy rule spf-fail: spf = fail"
    asked = {(q.name, q.rtype) for q in dns_server.queries}
    assert {("fail.test", "TXT"), ("pass.test", "TXT")} <= asked


class Recorder:
    """Keeps what each message's annotations held."""

    name: ClassVar[str] = "recorder"
    stages: ClassVar[Stage] = Stage.END

    def __init__(self) -> None:
        self.seen: list[object] = []

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        self.seen.append(message.annotations.get("spf"))
        return ACCEPT


def test_filters_see_the_spf_result_and_fail_alone_refuses_nothing(
    tmp_path: Path, dns_server: DnsServer
) -> None:
    publish(dns_server)
    recorder = Recorder()
    asyncio.run(receive(tmp_path, dns_server, recorder))
    assert [type(s) for s in recorder.seen] == [SpfResult, SpfResult]
    fail, passed = recorder.seen
    assert isinstance(fail, SpfResult) and isinstance(passed, SpfResult)
    assert (fail.result, fail.domain, fail.identity) == ("fail", "fail.test", "mailfrom")
    assert (passed.result, passed.sender) == ("pass", "a@pass.test")


async def receive(tmp_path: Path, dns_server: DnsServer, recorder: Recorder) -> None:
    data = tmp_path / "data"
    settings = load_settings(
        overrides={
            "server.data_dir": str(data),
            "server.hostname": "mx.test",
            "server.listen": ["127.0.0.1:0"],
            "server.submission_listen": [],
            "server.implicit_tls_listen": [],
            "server.local_domains": ["mx.test"],
            "server.reverse_dns": False,
            "relay.trusted_networks": [],
            "dns.nameservers": [dns_server.address],
            "log.level": "error",
        }
    )
    data.mkdir()
    with AccountStore(data / "accounts.sqlite3", config_domains=["mx.test"]) as accounts:
        accounts.add_user("bob@mx.test")
    hato = Hato(settings, filters=(recorder,))
    await hato.start()
    try:
        host, port = hato.bound[0]
        for sender in ("a@fail.test", "a@pass.test"):
            await aiosmtplib.send(
                MESSAGE,
                sender=sender,
                recipients=["bob@mx.test"],
                hostname=host,
                port=port,
                local_hostname="client.example",
                start_tls=False,
                timeout=10,
            )
    finally:
        await hato.stop()
