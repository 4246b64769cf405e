"""The intake as built: the message filters, delivery in the DATA phase, the group commit.

Every message takes the same steps (Postfix's cleanup is the model):

1. ``open``: a spool writer (in memory while delivery in the DATA phase may take it), and
   the opening filters' trace fields written first.
2. ``write``: the header section is held (at most ``MAX_HEADER_READ``) and parsed once;
   the header filters' fields go above it; the rest streams to the writer.
3. ``finish``: the end filters, in order, each under its time limit; a refusal drops the
   message (a discard too, though the sender is told it was accepted); fields they add go
   to the top. Then local delivery while the sender waits, or the durable commit; then
   the ``Queued`` event and the queue's notice. Only then does ``finish`` return
   ``Accepted``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import BinaryIO

from ..events import EventLog, FilterVerdict, InternalError, Queued
from ..smtp import reply
from ..spool import (
    Accepted,
    Envelope,
    MessageSource,
    MessageWriter,
    Origin,
    Refusal,
    Spool,
    SpoolError,
)
from ._edits import readdress
from ._filter import Action, Header, Message, Verdict, parse_header
from ._pipeline import Pipeline
from ._session import SessionRun

__all__ = ["MAX_HEADER_READ", "DeliverInData", "PipelineIntake"]

# How much of a header section is held and parsed before the data streams on; a longer
# section is taken as it is (its filters see it marked incomplete).
MAX_HEADER_READ = 64 * 1024

R_WRITE_ERROR = reply(451, "4.3.0", "Error: queue file write error, try again later")

# Delivery in the DATA phase (``queue.deliver_in_data``): local mailboxes written while
# the sender waits. True once every copy is durable (``announce`` called first), False to
# queue the message instead.
DeliverInData = Callable[[str, Envelope, MessageSource, Callable[[], None]], Awaitable[bool]]


class PipelineIntake:
    """``spool.Intake``: one for the whole server, shared by every way in."""

    def __init__(
        self,
        *,
        spool: Spool,
        pipeline: Pipeline,
        log: EventLog,
        notify: Callable[[str], None],
        deliver_in_data: DeliverInData | None = None,
    ) -> None:
        self.spool, self.pipeline, self.log = spool, pipeline, log
        self.notify, self.deliver_in_data = notify, deliver_in_data

    def session(self, listener: str, session_id: str) -> SessionRun | None:
        """The envelope stages of an SMTP session on ``listener`` (the ``ServerContext``'s
        ``stages`` factory); None when no filter takes part there before the data."""
        steps = self.pipeline.envelope_steps(listener)
        return SessionRun(steps, self.log, session_id) if steps else None

    def open(
        self, envelope: Envelope, origin: Origin, *, annotations: Mapping[str, object] = {}
    ) -> _Incoming:
        # Reports are written whole and always queued: no reason to hold them in memory.
        in_memory = self.deliver_in_data is not None and origin is not Origin.REPORT
        writer = self.spool.new_message(in_memory=in_memory)
        incoming = _Incoming(self, writer, envelope, origin, dict(annotations))
        try:
            opening = self.pipeline.opening(writer.queue_id, envelope, origin)
            if opening:
                writer.write(opening)
        except SpoolError:
            writer.abort()
            raise
        return incoming


class _Incoming:
    def __init__(
        self,
        intake: PipelineIntake,
        writer: MessageWriter,
        envelope: Envelope,
        origin: Origin,
        annotations: Mapping[str, object],
    ) -> None:
        self._intake, self._writer = intake, writer
        self.envelope, self.origin = envelope, origin
        self.annotations = annotations
        stages = annotations.get("stages")
        self._sessions = stages.sessions if isinstance(stages, SessionRun) else {}
        self._held: bytearray | None = bytearray()  # the header section, until it ends
        self._header: Header | None = None
        self._header_at = 0  # where the held header section starts in what was written
        self._header_whole = True  # False: its last field may go on past what was held
        self._failed = False
        self._finishing = 0.0  # time.monotonic() at the end of the data

    @property
    def queue_id(self) -> str:
        return self._writer.queue_id

    @property
    def size(self) -> int:
        return self._writer.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._put(data)
            return
        held += data
        if held.startswith(b"\r\n") or b"\r\n\r\n" in held or len(held) > MAX_HEADER_READ:
            self._end_header()

    def abort(self) -> None:
        self._held = None
        self._writer.abort()

    def _put(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._writer.write(data)
        except SpoolError:
            self._failed = True
            raise

    def _end_header(self, *, ended: bool = False) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if held.startswith(b"\r\n"):
            end, complete = 0, True
        else:
            found = held.find(b"\r\n\r\n")
            end, complete = (found + 2, True) if found >= 0 else (len(held), False)
        self._header = parse_header(bytes(held[:end]), complete=complete)
        self._header_whole = complete or ended
        added = self._intake.pipeline.header(self._message(b"", None))
        self._header_at = self._writer.size + len(added)
        self._put(added + held if added else held)

    def _message(self, added: bytes, content: bytes | None) -> Message:
        header = self._header if self._header is not None else parse_header(b"")
        return Message(
            queue_id=self.queue_id,
            envelope=self.envelope,
            origin=self.origin,
            header=header,
            size=self._writer.size if content is None else len(content),
            open=self._open_source if content is None else (lambda: io.BytesIO(content)),
            added=added,
            annotations=self.annotations,
            sessions=self._sessions,
            dropped=self._dropped,
        )

    def _open_source(self) -> BinaryIO:
        return self._writer.source().open()

    async def finish(self) -> Accepted | Refusal:
        intake = self._intake
        self._finishing = time.monotonic()
        try:
            if self._held is not None:
                self._end_header(ended=True)
            if self._failed:
                raise SpoolError(f"message {self.queue_id} could not be written")
            verdict = await intake.pipeline.end(self._message, self._recorded)
            if verdict.action in (Action.REJECT, Action.DEFER):
                self.abort()
                assert verdict.reply is not None
                return Refusal(verdict.reply, verdict.reason)
            if verdict.action is Action.DISCARD:
                # Accepted and stored nowhere: the 250 promises nothing more to keep.
                self.abort()
                return Accepted(self.queue_id)
            envelope = self._envelope(verdict)
            if envelope is None:
                self.abort()  # every recipient deleted: accepted, and no one to keep it for
                return Accepted(self.queue_id)
            if verdict.content is not None:  # edited: the whole message is new
                await self._prepend(verdict.prepend + verdict.content, [(0, self._writer.size)])
            elif verdict.prepend or verdict.drop:
                await self._prepend(verdict.prepend, self._dropped(verdict.drop))
            delivered = await asyncio.shield(self._store(envelope))
        except SpoolError as error:
            self.abort()
            intake.log.emit(
                InternalError(where="spool", error=repr(error), session=self.envelope.session_id)
            )
            return Refusal(R_WRITE_ERROR, "spool error")
        return Accepted(self.queue_id, delivered=delivered)

    def _envelope(self, verdict: Verdict) -> Envelope | None:
        envelope = self.envelope
        if verdict.readdresses:
            found = readdress(
                envelope,
                sender=verdict.sender,
                add=verdict.add_recipients,
                delete=verdict.delete_recipients,
            )
            if found is None:
                return None
            envelope = self.envelope = found
        if verdict.action is Action.QUARANTINE:
            envelope = dataclasses.replace(envelope, folder="Junk")
        return envelope

    async def _prepend(self, fields: bytes, leave_out: list[tuple[int, int]]) -> None:
        writer = self._writer
        if writer.contents() is not None:
            writer.prepend(fields, leave_out)
        else:
            await asyncio.to_thread(writer.prepend, fields, leave_out)

    def _dropped(self, drop: tuple[int, ...]) -> list[tuple[int, int]]:
        """The byte ranges of the held header fields a verdict drops, in order."""
        header = self._header
        if header is None or not drop:
            return []
        # The last field of a section cut short may go on past what was held.
        droppable = len(header.spans) - (0 if self._header_whole else 1)
        at, wanted = self._header_at, set(drop)
        return [
            (at + start, at + end)
            for index, (start, end) in enumerate(header.spans)
            if index in wanted and index < droppable
        ]

    async def _store(self, envelope: Envelope) -> bool:
        """Deliver while the sender waits, or commit; True when delivered (never queued).
        Shielded: a sender that leaves now does not stop the message being kept."""
        intake, writer = self._intake, self._writer
        deliver_in_data = intake.deliver_in_data
        if deliver_in_data is not None and self.origin is not Origin.REPORT:
            source = writer.source()
            if await deliver_in_data(writer.queue_id, envelope, source, self._announce):
                writer.abort()  # delivered: the spool copy was only the source
                return True
        await writer.commit(envelope)
        self._announce()
        intake.notify(writer.queue_id)
        return False

    def _announce(self) -> None:
        header = self._header
        message_id = header.get("Message-ID") if header is not None else None
        envelope = self.envelope
        self._intake.log.emit(
            Queued(
                session=envelope.session_id,
                queue_id=self.queue_id,
                size=self._writer.size,
                reverse_path=envelope.reverse_path,
                recipients=tuple(r.address for r in envelope.recipients),
                client_ip=envelope.client_ip,
                message_id=(
                    b" ".join(message_id.split()).decode("utf-8", "replace")[:998]
                    if message_id
                    else ""
                ),
                elapsed=round(time.monotonic() - self._finishing, 6),
                origin=self.origin.value,
            )
        )

    def _recorded(self, name: str, verdict: Verdict, elapsed: float) -> None:
        """Every verdict that is not a plain accept is an event (and so in the recorder)."""
        self._intake.log.emit(
            FilterVerdict(
                session=self.envelope.session_id,
                queue_id=self.queue_id,
                filter=name,
                action=verdict.action.value,
                reason=verdict.reason,
                reply=str(verdict.reply) if verdict.reply is not None else "",
                elapsed=round(elapsed, 6),
            )
        )
