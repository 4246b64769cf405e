"""What the queue hands a remote delivery agent, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hato.delivery._result import Result
from hato.spool import Envelope, MessageSource

__all__ = ["RemoteAgent", "RemoteJob", "RemoteResult", "RemoteTarget"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteTarget:
    position: int  # the spool recipient this target belongs to
    address: str  # where to send (an alias may have rewritten the recipient)
    notify: tuple[str, ...] = ()
    orcpt: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteJob:
    """One message to one destination domain: one SMTP transaction for all its targets."""

    queue_id: str
    domain: str
    envelope: Envelope
    targets: tuple[RemoteTarget, ...]
    source: MessageSource
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteResult:
    target: RemoteTarget
    result: Result
    remote_mta: str | None = None  # host name of the server that answered, once one did
    diagnostic: str | None = None  # that server's reply, "550 5.1.1 <x@y>: user unknown"
    dsn_forwarded: bool = False  # the next hop speaks DSN and got NOTIFY/ORCPT passed on
    command: str | None = None  # the command line that diagnostic answered, "RCPT TO:<x@y>"


class RemoteAgent(Protocol):
    async def deliver(self, job: RemoteJob) -> list[RemoteResult]:
        """One result per target, in order; never raises for the peer's faults."""
        ...

    async def close(self) -> None:
        """Let go of kept sessions (at shutdown)."""
        ...
