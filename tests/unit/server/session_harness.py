"""A :class:`hato.server.Session` in process: an in-memory transport, the real checks, AUTH
and submission rules over a real account store, and a fake intake (the seam) that can be
told to be slow or to refuse. Configured as the dialog tests' ``hato serve`` is: hostname
``mx.test.example``, no trusted networks, a catch-all for each local domain."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hato.accounts import AccountStore
from hato.config import Settings, load_settings
from hato.events import EventLog, OpsEvent
from hato.routing import LocalRouter
from hato.server import (
    Authenticator,
    Checks,
    ServerContext,
    ServerTls,
    Session,
    Sessions,
    SubmissionRules,
    limits_from,
)
from hato.spool import Accepted, Envelope, Origin, Refusal, SpoolError

HOSTNAME = "mx.test.example"
HOLD_TARGET = "hold@relay.test.example"
CLIENT = ("127.0.0.1", 40000)
# Generous: an in-process reply takes microseconds; this only stops a hang.
REPLY_TIMEOUT = 5.0


class MemoryTransport:
    """What a Session uses of asyncio.Transport, writing into a buffer."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        self.protocol = protocol
        self.buffer = bytearray()
        self.closing = False
        self.reading = True
        self.changed = asyncio.Event()

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.buffer += data
        self.changed.set()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.changed.set()
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": CLIENT, "sockname": ("127.0.0.1", 25)}.get(name, default)

    async def read_line(self) -> str:
        while b"\r\n" not in self.buffer:
            if self.closing:
                raise AssertionError(f"closed while a line was expected: {bytes(self.buffer)!r}")
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), REPLY_TIMEOUT)
        line, _, rest = bytes(self.buffer).partition(b"\r\n")
        self.buffer[:] = rest
        return line.decode("utf-8", errors="replace")

    async def closed(self) -> None:
        while not self.closing:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), REPLY_TIMEOUT)


@dataclass
class FakeIntake:
    """The intake seam: keeps what it is given; ``delay`` holds ``finish``, ``refusal``
    makes it refuse, ``fail_open``/``fail_write`` make the spool fail."""

    delay: float = 0.0
    refusal: Refusal | None = None
    fail_open: bool = False
    fail_write: bool = False
    stored: dict[str, bytes] = field(default_factory=dict)
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    origins: list[Origin] = field(default_factory=list)
    aborted: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def open(
        self, envelope: Envelope, origin: Origin, *, annotations: Mapping[str, object] = {}
    ) -> FakeMessage:
        if self.fail_open:
            raise SpoolError("the spool is full (test)")
        self.origins.append(origin)
        return FakeMessage(self, f"Q{next(self._ids):04d}", envelope)


class FakeMessage:
    def __init__(self, intake: FakeIntake, queue_id: str, envelope: Envelope) -> None:
        self.intake, self.queue_id, self.envelope = intake, queue_id, envelope
        self.data = bytearray()

    @property
    def size(self) -> int:
        return len(self.data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.intake.fail_write:
            raise SpoolError("disk full (test)")
        self.data += data

    def abort(self) -> None:
        self.intake.aborted += 1

    async def finish(self) -> Accepted | Refusal:
        # As the real intake does: a commit once started ends even if the caller is gone.
        return await asyncio.shield(self._commit())

    async def _commit(self) -> Accepted | Refusal:
        if self.intake.delay:
            await asyncio.sleep(self.intake.delay)
        if self.intake.refusal is not None:
            return self.intake.refusal
        self.intake.stored[self.queue_id] = bytes(self.data)
        self.intake.envelopes[self.queue_id] = self.envelope
        return Accepted(self.queue_id)


def dialog_settings(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(
        overrides={
            "server.data_dir": str(data_dir),
            "server.hostname": HOSTNAME,
            "server.reverse_dns": False,
            "relay.trusted_networks": [],
            **overrides,
        }
    )


def open_accounts(settings: Settings, *, accept_all: bool = True) -> AccountStore:
    server = settings.server
    server.data_dir.mkdir(parents=True, exist_ok=True)
    store = AccountStore(server.data_dir / "accounts.sqlite3", config_domains=server.local_domains)
    if accept_all:
        for domain in ("localhost", HOSTNAME):
            store.add_alias(f"@{domain}", HOLD_TARGET)
    return store


class Harness:
    """One server's worth of collaborators; :meth:`connect` makes a session."""

    def __init__(
        self,
        settings: Settings,
        accounts: AccountStore,
        intake: FakeIntake,
        *,
        tls: ServerTls | None = None,
        usage: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.events: list[OpsEvent] = []
        log = EventLog()
        log.subscribe(lambda _time, event: self.events.append(event))
        server = settings.server
        known = settings.accounts
        router = LocalRouter(  # as app.py builds it
            accounts,
            config_domains=server.local_domains,
            hostname=server.hostname,
            delimiter=known.recipient_delimiter,
            case_sensitive=known.case_sensitive_local_parts,
            postmaster=known.postmaster,
        )
        sizes = usage if usage is not None else {}
        self.intake = intake
        self.sessions = Sessions()
        self.context = ServerContext(
            settings=settings,
            log=log,
            limits=limits_from(settings),
            intake=intake,
            checks=Checks(
                settings,
                router=router,
                usage=lambda domain, local, quota: sizes.get((domain, local), 0),
                log=log,
            ),
            submission=SubmissionRules(router, sender_login_match=settings.auth.sender_login_match),
            auth=Authenticator(accounts, settings.auth, hostname=server.hostname, log=log),
            tls=tls,
        )

    def connect(self, *, submission: bool = False) -> tuple[Session, MemoryTransport]:
        session = Session(self.context, self.sessions, "test", submission=submission)
        transport = MemoryTransport(session)
        session.connection_made(transport)  # type: ignore[arg-type]
        return session, transport

    def of(self, kind: type[OpsEvent]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]
