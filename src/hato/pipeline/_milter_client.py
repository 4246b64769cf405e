"""One connection to a milter: asyncio glue over the sans-I/O ``milter`` codec.

It opens the socket (``inet:HOST:PORT``, ``inet:[IPV6]:PORT``, ``unix:/path``) within the
connect timeout, negotiates, and then sends commands and reads the answer each one gets
under the negotiation, within the command timeout (the end of the message within the
message timeout; a ``progress`` reply restarts it). Anything that goes wrong is a
:class:`MilterUnavailable` saying what, and the connection is closed: the caller applies
its default action, never a stuck session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from .. import milter
from ..config import MilterSocket
from ..milter import Command, MilterProtocolError

__all__ = [
    "OFFERED_ACTIONS",
    "OFFERED_PROTOCOL",
    "Answer",
    "MilterConnection",
    "MilterUnavailable",
]

# Everything a milter may ask to do, and every step it may skip or leave unanswered: we
# honour them all (not the larger data sizes: chunks stay at 64 KiB).
OFFERED_ACTIONS = milter.Action(sum(int(a) for a in milter.Action))
OFFERED_PROTOCOL = milter.Protocol(
    sum(int(p) for p in milter.Protocol)
    & ~int(
        milter.Protocol.MAX_DATA_256K | milter.Protocol.MAX_DATA_1M | milter.Protocol.RCPT_REJECTED
    )
)
_READ = 65536
# Final answers: what ends the wait for a command's reply.
_FINAL = (
    milter.Accept,
    milter.Continue,
    milter.Reject,
    milter.Tempfail,
    milter.Discard,
    milter.ReplyWithCode,
    milter.Skip,
    milter.ConnectionFail,
    milter.Shutdown,
)
# What a milter may send at the end of the message before its final answer.
_MODIFICATIONS = (
    milter.AddHeader,
    milter.InsertHeader,
    milter.ChangeHeader,
    milter.ChangeFrom,
    milter.AddRecipient,
    milter.DeleteRecipient,
    milter.ReplaceBody,
    milter.Quarantine,
)


class MilterUnavailable(Exception):
    """The milter could not be reached, did not answer in time, or broke the protocol."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A command's final reply, and the modifications (end of message) before it."""

    final: milter.Reply
    modifications: tuple[milter.Reply, ...] = ()


class MilterConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        command_timeout: float,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._replies = milter.ReplyReader()
        self._pending: list[milter.Reply] = []
        self.command_timeout = command_timeout
        self.negotiated = milter.Negotiated(
            version=milter.PROTOCOL_VERSION, actions=milter.Action(0), protocol=milter.Protocol(0)
        )
        self.closed = False

    @classmethod
    async def open(
        cls, where: MilterSocket, *, connect_timeout: float, command_timeout: float
    ) -> MilterConnection:
        try:
            async with asyncio.timeout(connect_timeout):
                if where.kind == "unix":
                    reader, writer = await asyncio.open_unix_connection(where.path)
                else:
                    reader, writer = await asyncio.open_connection(where.host, where.port)
        except TimeoutError:
            raise MilterUnavailable(
                f"no connection to {where} within {connect_timeout} s"
            ) from None
        except OSError as error:
            raise MilterUnavailable(
                f"cannot connect to {where}: {error.strerror or error}"
            ) from None
        return cls(reader, writer, command_timeout=command_timeout)

    async def negotiate(self) -> milter.Negotiated:
        self._send(milter.negotiate(OFFERED_ACTIONS, OFFERED_PROTOCOL))
        reply = await self._next(self.command_timeout)
        if not isinstance(reply, milter.Negotiated):
            raise self._broken(f"answered OPTNEG with {type(reply).__name__}")
        if reply.version < 2:
            raise self._broken(f"speaks milter protocol version {reply.version}")
        if reply.protocol & ~OFFERED_PROTOCOL:
            raise self._broken(f"asked for protocol steps not offered ({int(reply.protocol):#x})")
        self.negotiated = reply
        return reply

    def sends(self, command: Command) -> bool:
        return milter.sent(command, self.negotiated.protocol)

    def send(self, packets: Sequence[bytes]) -> None:
        """Commands that get no answer (macros, ABORT, QUIT, an unanswered callback)."""
        self._send(b"".join(packets))

    async def ask(
        self, packet: bytes, command: Command, *, timeout: float | None = None
    ) -> Answer | None:
        """Send one command; its final answer, or None when the negotiation says it gets
        none. At the end of the message, the modifications before the answer come too."""
        self._send(packet)
        wait = timeout or self.command_timeout
        try:
            async with asyncio.timeout(wait):
                await self._writer.drain()
        except TimeoutError:
            raise self._broken(f"took no data within {wait} s") from None
        except OSError as error:
            raise self._broken(f"connection lost: {error.strerror or error}") from None
        if not milter.answered(command, self.negotiated.protocol):
            return None
        modifications: list[milter.Reply] = []
        while True:
            reply = await self._next(wait)
            if isinstance(reply, milter.Progress):
                continue  # still working: wait on, with the timer restarted
            if isinstance(reply, _FINAL):
                if isinstance(reply, milter.Skip) and command is not Command.BODY:
                    raise self._broken(f"answered {command.name} with skip")
                return Answer(reply, tuple(modifications))
            if isinstance(reply, _MODIFICATIONS) and command is Command.END_OF_MESSAGE:
                modifications.append(reply)
                continue
            raise self._broken(f"answered {command.name} with {type(reply).__name__}")

    def close(self, *, quit: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            if quit:
                self._writer.write(milter.encode(Command.QUIT))
            self._writer.close()

    def _send(self, data: bytes) -> None:
        if self.closed or self._writer.is_closing():
            raise MilterUnavailable("the milter's connection is closed")
        self._writer.write(data)

    async def _next(self, timeout: float) -> milter.Reply:
        while not self._pending:
            try:
                async with asyncio.timeout(timeout):
                    data = await self._reader.read(_READ)
            except TimeoutError:
                raise self._broken(f"no answer within {timeout} s") from None
            except OSError as error:
                raise self._broken(f"connection lost: {error.strerror or error}") from None
            if not data:
                raise self._broken("closed the connection")
            try:
                self._pending += self._replies.feed(data)
            except MilterProtocolError as error:
                raise self._broken(f"protocol error: {error}") from None
        return self._pending.pop(0)

    def _broken(self, what: str) -> MilterUnavailable:
        self.close(quit=False)
        return MilterUnavailable(what)
