"""A filter that drops received header fields, in a whole Hato: the Maildir copy lacks them,
for a message held in memory and for one past the in-memory limit (its own file)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import aiosmtplib
import pytest

from hato.accounts import AccountStore
from hato.app import Hato
from hato.config import load_settings
from hato.pipeline import Message, Stage, Verdict
from hato.spool import Envelope, Origin

FORGED = b"Authentication-Results: mx.test; dmarc=pass\r\n"


class DropForged:
    """Removes every Authentication-Results field and adds its own."""

    name: ClassVar[str] = "drop-forged"
    stages: ClassVar[Stage] = Stage.END

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        drop = tuple(
            index
            for index, (name, _) in enumerate(message.header.fields)
            if name.lower() == "authentication-results"
        )
        return Verdict.accept(b"Authentication-Results: mx.test; none\r\n", drop=drop)


@pytest.mark.parametrize("size", [2_000, 400_000], ids=["in-memory", "past-the-memory-limit"])
def test_dropped_field_is_not_delivered(tmp_path: Path, size: int) -> None:
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
        }
    )
    data.mkdir()
    with AccountStore(data / "accounts.sqlite3", config_domains=["mx.test"]) as accounts:
        accounts.add_user("bob@mx.test")
    body = b"".join(b"line %06d of the body\r\n" % n for n in range(size // 24))
    message = (
        FORGED
        + b"From: <alice@example.org>\r\n"
        + FORGED.replace(b"dmarc=pass", b"spf=pass")
        + b"Subject: forged results\r\n\r\n"
        + body
    )

    async def main() -> None:
        hato = Hato(settings, filters=(DropForged(),))
        await hato.start()
        host, port = hato.bound[0]
        try:
            await aiosmtplib.send(
                message,
                sender="alice@example.org",
                recipients=["bob@mx.test"],
                hostname=host,
                port=port,
                start_tls=False,
                timeout=10,
            )
        finally:
            await hato.stop()

    asyncio.run(main())
    (delivered,) = [p.read_bytes() for p in (data / "mailboxes/mx.test/bob/new").iterdir()]
    header, _, stored_body = delivered.partition(b"\r\n\r\n")
    assert header.startswith(
        b"Return-Path: <alice@example.org>\r\nDelivered-To: bob@mx.test\r\n"
        b"Authentication-Results: mx.test; none\r\nReceived: from"
    )
    assert header.count(b"Authentication-Results") == 1
    assert header.endswith(b"\r\nFrom: <alice@example.org>\r\nSubject: forged results")
    assert stored_body == body
