"""The golden dialogs (``tests/dialogs/*.txt``) against a Session in process, and what only
a fake intake can show: a slow commit holds pipelined commands, a refusal or a spool
failure is answered, a client that leaves mid-commit still has its message kept.

The same files run against a real ``hato serve`` in ``integration/test_dialogs.py``; here
the session has real checks, AUTH and submission rules over a real account store, and
the seam the issue names (the intake) is a fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from session_harness import (
    FakeIntake,
    Harness,
    MemoryTransport,
    dialog_settings,
    open_accounts,
)

from dialog_script import QUEUED, dialog_files, matches, parse
from hato.events import Disconnected, Rejected
from hato.server import ServerTls
from hato.smtp import reply
from hato.spool import Origin, Refusal

EHLO = b"EHLO client.example\r\n"
ENVELOPE = b"MAIL FROM:<a@test.com>\r\nRCPT TO:<user@localhost>\r\n"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    """A self-signed certificate, so STARTTLS is offered as the dialogs expect."""
    data_dir = tmp_path_factory.mktemp("tls")
    settings = dialog_settings(data_dir)
    return ServerTls(settings.tls, hostname=settings.server.hostname, data_dir=data_dir)


@pytest.fixture
def make(tmp_path: Path, tls: ServerTls) -> Iterator[Harness]:
    settings = dialog_settings(tmp_path / "data")
    accounts = open_accounts(settings)
    yield Harness(settings, accounts, FakeIntake(), tls=tls)
    accounts.close()


async def play(path: Path, harness: Harness) -> None:
    session, transport = harness.connect()
    queued: list[str] = []
    contents: dict[str, bytes] = {}
    for step in parse(path):
        where = f"{path.name}:{step.lineno}"
        if step.kind == "send":
            session.data_received(step.data)
        elif step.kind == "expect":
            line = await transport.read_line()
            assert matches(step.pattern, line), f"{where}: expected {step.pattern!r}, got {line!r}"
            if found := QUEUED.match(line):
                queued.append(found.group(1))
        elif step.kind == "stored":
            contents[queued[-1]] = contents.get(queued[-1], b"") + step.data
        else:
            await transport.closed()
    await asyncio.sleep(0.01)  # anything still to come would be written by now
    assert not transport.buffer, f"{path.name}: unexpected bytes: {bytes(transport.buffer)!r}"
    transport.close()
    await asyncio.sleep(0)
    assert harness.of(Disconnected), "the session did not end"
    assert list(harness.intake.stored) == queued, "the intake kept what the client was not told"
    for queue_id, content in contents.items():
        assert harness.intake.stored[queue_id] == content, f"{where}: {queue_id} as stored"


@pytest.mark.parametrize("path", dialog_files(), ids=lambda path: path.stem)
async def test_dialog_in_process(path: Path, make: Harness) -> None:
    await play(path, make)


async def talk(transport: MemoryTransport, session: object, data: bytes, lines: int) -> list[str]:
    session.data_received(data)  # type: ignore[attr-defined]
    return [await transport.read_line() for _ in range(lines)]


async def greeted(harness: Harness) -> tuple[object, MemoryTransport]:
    session, transport = harness.connect()
    assert (await transport.read_line()).startswith("220 ")
    assert (await talk(transport, session, EHLO, 10))[-1] == "250 HELP"
    return session, transport


async def test_a_slow_intake_holds_pipelined_commands_until_the_message_is_kept(
    make: Harness,
) -> None:
    make.intake.delay = 0.3
    session, transport = await greeted(make)
    batch = ENVELOPE + b"DATA\r\n"
    assert await talk(transport, session, batch, 3) == [
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
    ]
    session.data_received(b"Subject: slow\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
    await asyncio.sleep(0.1)
    # Waiting on the intake: no reply yet, not even the NOOP's, and nothing kept yet.
    assert not transport.buffer and not make.intake.stored
    lines = [await transport.read_line() for _ in range(3)]
    assert lines[0] == f"250 2.0.0 Ok: queued as {next(iter(make.intake.stored))}"
    assert lines[1:] == ["250 2.0.0 Ok", "221 2.0.0 mx.test.example closing connection"]
    await transport.closed()


async def test_a_refusal_from_the_intake_is_answered_and_logged(make: Harness) -> None:
    make.intake.refusal = Refusal(reply(451, "4.7.1", "Try again later (test)"), "filter said so")
    session, transport = await greeted(make)
    await talk(transport, session, ENVELOPE + b"DATA\r\n", 3)
    lines = await talk(transport, session, b"x\r\n.\r\nNOOP\r\n", 2)
    assert lines == ["451 4.7.1 Try again later (test)", "250 2.0.0 Ok"]
    refused = make.of(Rejected)[-1]
    assert (refused.command, refused.reason) == ("DATA", "filter said so")
    assert refused.reply == "451 4.7.1 Try again later (test)"
    assert make.intake.origins == [Origin.SMTP]


@pytest.mark.parametrize("where", ["open", "write"])
async def test_a_failing_spool_is_a_451_and_the_session_goes_on(make: Harness, where: str) -> None:
    setattr(make.intake, f"fail_{where}", True)
    session, transport = await greeted(make)
    await talk(transport, session, ENVELOPE, 2)
    if where == "open":
        assert await talk(transport, session, b"DATA\r\n", 1) == [
            "451 4.3.0 Error: queue file write error, try again later"
        ]
    else:
        await talk(transport, session, b"DATA\r\n", 1)
        lines = await talk(transport, session, b"x\r\n.\r\n", 1)
        assert lines == ["451 4.3.0 Error: queue file write error, try again later"]
    assert await talk(transport, session, b"RSET\r\n", 1) == ["250 2.0.0 Ok"]
    # Either way one Rejected event says so (at DATA, or after the final dot).
    refused = make.of(Rejected)[-1]
    assert (refused.command, refused.reason) == ("DATA", "spool error")
    assert not make.intake.stored


async def test_a_client_that_leaves_mid_commit_still_has_its_message_kept(
    make: Harness,
) -> None:
    make.intake.delay = 0.2
    session, transport = await greeted(make)
    await talk(transport, session, ENVELOPE + b"DATA\r\n", 3)
    session.data_received(b"x\r\n.\r\n")
    transport.close()  # gone before the commit returns
    await asyncio.sleep(0.4)
    # Kept, and nothing written after the close (MemoryTransport.write would fail).
    assert len(make.intake.stored) == 1
    assert make.of(Disconnected)[0].reason == "client closed"


async def test_a_spool_failure_does_not_outlive_its_transaction(make: Harness) -> None:
    """A BDAT write that failed, then RSET: the next message is tried afresh, not refused."""
    make.intake.fail_write = True
    session, transport = await greeted(make)
    await talk(transport, session, ENVELOPE, 2)
    assert await talk(transport, session, b"BDAT 3\r\nabc", 1) == [
        "250 2.0.0 Ok: 3 octets received"
    ]
    assert await talk(transport, session, b"RSET\r\n", 1) == ["250 2.0.0 Ok"]
    make.intake.fail_write = False
    await talk(transport, session, ENVELOPE, 2)
    lines = await talk(transport, session, b"BDAT 3 LAST\r\nxyz", 1)
    assert lines == [f"250 2.0.0 Ok: queued as {next(iter(make.intake.stored), '?')}"]
    assert list(make.intake.stored.values()) == [b"xyz"]
