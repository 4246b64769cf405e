"""The message pipeline in a whole Hato, in process: real listeners, a real SMTP client,
real Maildirs; the filters are the test's own, plugged in where the next ones will be."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import aiosmtplib
import pytest

from hato.accounts import AccountStore
from hato.app import Hato
from hato.config import load_settings
from hato.pipeline import ACCEPT, Message, Stage, Verdict
from hato.smtp import reply
from hato.spool import Envelope, Origin

MESSAGE = b"From: <alice@example.org>\r\nSubject: {subject}\r\n\r\nHello.\r\n"


class BySubject:
    """Refuses, defers, quarantines or stamps a message after the word in its Subject."""

    name: ClassVar[str] = "by-subject"
    stages: ClassVar[Stage] = Stage.END

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        subject = (message.header.get("Subject") or b"").decode()
        if subject == "reject":
            return Verdict.reject(reply(550, "5.7.1", "Message refused by test"), "said reject")
        if subject == "defer":
            return Verdict.defer(reply(451, "4.7.1", "Try later, test"), "said defer")
        if subject == "junk":
            return Verdict.quarantine("said junk", prepend=b"X-Spam: yes\r\n")
        if subject == "slow":
            await asyncio.sleep(10)
        return ACCEPT if subject != "stamp" else Verdict.accept(b"X-Stamped: by test\r\n")


async def started(tmp_path: Path, options: dict[str, object]) -> Hato:
    """A started Hato on a loopback port for mx.test (user bob), with the test's filter."""
    data = tmp_path / "data"
    settings = load_settings(
        overrides={
            "server.data_dir": str(data),
            "server.hostname": "mx.test",
            "server.listen": ["127.0.0.1:0"],
            "server.submission_listen": [],
            "server.implicit_tls_listen": [],
            "server.local_domains": ["mx.test"],
            "log.level": "error",
            **options,
        }
    )
    data.mkdir()
    with AccountStore(data / "accounts.sqlite3", config_domains=["mx.test"]) as accounts:
        accounts.add_user("bob@mx.test")
    hato = Hato(settings, filters=(BySubject(),))
    await hato.start()
    return hato


def run(tmp_path: Path, *subjects: str) -> list[object]:
    async def main() -> list[object]:
        hato = await started(tmp_path, {"pipeline.timeout": 1.0})
        host, port = hato.bound[0]
        answers: list[object] = []
        try:
            for subject in subjects:
                try:
                    answers.append(
                        await aiosmtplib.send(
                            MESSAGE.replace(b"{subject}", subject.encode()),
                            sender="alice@example.org",
                            recipients=["bob@mx.test"],
                            hostname=host,
                            port=port,
                            start_tls=False,
                            timeout=10,
                        )
                    )
                except aiosmtplib.SMTPResponseException as error:
                    answers.append((error.code, error.message))
        finally:
            await hato.stop()
        return answers

    return asyncio.run(main())


def mailbox(tmp_path: Path, folder: str = "") -> list[bytes]:
    root = tmp_path / "data" / "mailboxes" / "mx.test" / "bob"
    if folder:
        root = root / f".{folder}"
    return [p.read_bytes() for p in sorted((root / "new").glob("*"))] if root.exists() else []


def test_verdicts_reach_the_client_and_the_mailbox(tmp_path: Path) -> None:
    answers = run(tmp_path, "plain", "reject", "defer", "junk", "stamp", "slow")
    assert [a[0] if isinstance(a, tuple) and isinstance(a[0], int) else "ok" for a in answers] == [
        "ok",
        550,
        451,
        "ok",
        "ok",
        451,  # the filter's time limit: tempfail, the default
    ]
    inbox = mailbox(tmp_path)
    assert [b"Subject: plain" in m for m in inbox].count(True) == 1
    (stamped,) = [m for m in inbox if b"Subject: stamp" in m]
    # The filter's field sits above the Received field of this hop.
    assert stamped.index(b"X-Stamped: by test") < stamped.index(b"Received: from")
    assert not any(b"Subject: reject" in m or b"Subject: defer" in m for m in inbox)
    (junk,) = mailbox(tmp_path, "Junk")
    assert b"Subject: junk" in junk and b"X-Spam: yes" in junk
    assert (
        tmp_path / "data" / "mailboxes" / "mx.test" / "bob" / ".Junk" / "maildirfolder"
    ).exists()


@pytest.mark.parametrize("deliver_in_data", [True, False])
def test_junk_goes_to_junk_through_the_queue_too(tmp_path: Path, deliver_in_data: bool) -> None:
    # Without delivery in the DATA phase the message is queued, and the queue's attempt
    # must keep the quarantine mark from the stored envelope.
    async def main() -> None:
        hato = await started(tmp_path, {"queue.deliver_in_data": deliver_in_data})
        host, port = hato.bound[0]
        try:
            await aiosmtplib.send(
                MESSAGE.replace(b"{subject}", b"junk"),
                sender="alice@example.org",
                recipients=["bob@mx.test"],
                hostname=host,
                port=port,
                start_tls=False,
                timeout=10,
            )
            for _ in range(100):
                if mailbox(tmp_path, "Junk"):
                    break
                await asyncio.sleep(0.05)
        finally:
            await hato.stop()

    asyncio.run(main())
    assert len(mailbox(tmp_path, "Junk")) == 1 and mailbox(tmp_path) == []
