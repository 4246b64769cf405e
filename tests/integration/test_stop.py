"""Stopping a whole Hato, in process, when something it waits for never finishes: the stop
still ends, and says what it waited for."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import ClassVar

from hato.accounts import AccountStore
from hato.app import Hato
from hato.config import load_settings
from hato.pipeline import ACCEPT, Message, Stage, Verdict
from hato.spool import Envelope, Origin


class Stuck:
    """An end-of-data filter that never answers (its time limit is longer than the test)."""

    name: ClassVar[str] = "stuck"
    stages: ClassVar[Stage] = Stage.END

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        self.entered.set()
        await asyncio.sleep(3600)
        return ACCEPT


def test_a_stop_that_waits_too_long_says_for_what_and_still_ends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = load_settings(
        overrides={
            "server.data_dir": str(data),
            "server.hostname": "mx.test",
            "server.listen": ["127.0.0.1:0"],
            "server.submission_listen": [],
            "server.implicit_tls_listen": [],
            "server.local_domains": ["mx.test"],
            "server.shutdown_grace": 0.2,
            "pipeline.timeout": 3600.0,
            "web.listen": [],
            "mailauth.check": False,  # no DNS beyond loopback
            "log.level": "error",
        }
    )
    with AccountStore(data / "accounts.sqlite3", config_domains=["mx.test"]) as accounts:
        accounts.add_user("bob@mx.test")

    async def main() -> float:
        stuck = Stuck()
        hato = Hato(settings, filters=(stuck,))
        hato.stop_slack = 0.5
        await hato.start()
        host, port = hato.bound[0]
        _, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"EHLO client.test\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@mx.test>\r\n"
            b"DATA\r\n"
        )
        await writer.drain()
        writer.write(b"Subject: never answered\r\n\r\nHello.\r\n.\r\n")
        await writer.drain()
        await asyncio.wait_for(stuck.entered.wait(), 10)
        began = time.monotonic()
        await asyncio.wait_for(hato.stop("test"), 30)
        took = time.monotonic() - began
        writer.close()
        return took

    took = asyncio.run(main())
    # The session's commit is owed its reply, so SMTP waits its bounded 5 s for it.
    assert took < 15
    events = [
        json.loads(line)
        for line in (data / "log" / "events.jsonl").read_text().splitlines()
        if line.strip()
    ]
    (report,) = [e for e in events if e["event"] == "internal_error" and e["where"] == "shutdown"]
    assert "still waiting for smtp" in report["error"]
    assert "end:" in report["error"]  # the stuck filter's coroutine is among the pending tasks
    assert events[-1]["event"] == "server_stopped"
