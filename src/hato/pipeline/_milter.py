"""A milter as a message filter: connected at the start of each SMTP session (as Postfix
does), told each stage as it happens, and given the message at the end of its data.

Verdicts are honoured where they come: at RCPT a refusal is that recipient's; at MAIL the
transaction's; at the end the message's (reject, tempfail, a reply code of its own,
discard, quarantine into Junk) together with the changes the milter made (header fields
added, inserted, changed or deleted, the body replaced, the sender changed, recipients
added or deleted), which the intake applies to what is stored and delivered. Every action
is a ``milter_action`` event naming the milter.

A milter that cannot be reached, hangs or breaks the protocol costs its
``default_action`` ("tempfail": 451 4.7.1 for the transaction; "accept": the mail goes on
unchecked) and one event; the session never waits past the milter's timeouts. Messages
Hato writes itself (``local``) get a connection of their own, opened at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from .. import __version__, milter
from ..config import MilterSettings
from ..events import EventLog, MilterAction
from ..milter import Command, Family
from ..smtp import Reply, parse_reply, reply
from ..spool import Origin, SessionFacts
from ._filter import ACCEPT, Action, HeaderEdit, Message, Stage, Verdict, parse_header
from ._milter_client import Answer, MilterConnection, MilterUnavailable

__all__ = ["MilterFilter", "MilterSession"]

R_REJECTED = reply(550, "5.7.1", "Command rejected")
R_TEMPFAIL = reply(451, "4.7.1", "Service unavailable - try again later")
_LOCAL = SessionFacts(
    session_id="",
    listener="local",
    client_ip="127.0.0.1",
    client_port=0,
    client_name="localhost",
    server_ip="127.0.0.1",
    server_port=0,
)


class MilterFilter:
    """One configured milter: the pipeline's filter, and a factory of its sessions."""

    stages: ClassVar[Stage] = Stage.CONNECT | Stage.HELO | Stage.MAIL | Stage.RCPT | Stage.END
    name: str  # per instance: the milter's configured name

    def __init__(self, settings: MilterSettings, *, hostname: str, log: EventLog) -> None:
        self.settings, self.hostname, self.log = settings, hostname, log
        self.name = settings.name
        configured = dict(settings.macros)
        self.macros = {
            stage: configured.get(stage, names) for stage, names in milter.DEFAULT_MACROS.items()
        }

    def session(self, facts: SessionFacts) -> MilterSession:
        return MilterSession(self, facts)

    def opening(self, queue_id: str, envelope: object, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        session = message.sessions.get(self.name)
        if isinstance(session, MilterSession):
            return await session.end(message)
        if message.origin is not Origin.REPORT or "local" not in self.settings.listeners:
            return ACCEPT  # a listener this milter is not for
        return await self._local(message)

    async def _local(self, message: Message) -> Verdict:
        """A message Hato wrote itself: a connection for it alone, every stage at once."""
        session = MilterSession(self, _LOCAL)
        try:
            envelope = message.envelope
            for step in (
                session.connect(_LOCAL),
                session.mail(_LOCAL, envelope.reverse_path, ()),
                *(session.rcpt(_LOCAL, r.address, ()) for r in envelope.recipients),
            ):
                verdict = await step
                if verdict.action is not Action.ACCEPT:
                    return verdict
            return await session.end(message)
        finally:
            session.close()


class MilterSession:
    """One milter's part in one SMTP session (``pipeline.FilterSession``)."""

    def __init__(self, owner: MilterFilter, facts: SessionFacts) -> None:
        self.owner, self.settings = owner, owner.settings
        self.facts = facts
        self.conn: MilterConnection | None = None
        self.failed = ""  # why the milter is unusable for the rest of the session
        self.done = False  # accepted the connection: no more callbacks in this session
        self.skip_message = False  # accepted the message: none until the next MAIL
        self.discard = False  # asked before the data that the message be discarded
        self.transaction = False  # a MAIL was sent and not yet ended by EOM or ABORT
        self.mail_macros: dict[str, str] = {}
        self.rcpt_macros: dict[str, str] = {}

    # -- the envelope stages -------------------------------------------------------------

    async def connect(self, facts: SessionFacts) -> Verdict:
        self.facts = facts
        settings = self.settings
        try:
            self.conn = await MilterConnection.open(
                settings.socket,
                connect_timeout=settings.connect_timeout,
                command_timeout=settings.command_timeout,
            )
            await self.conn.negotiate()
        except MilterUnavailable as error:
            return self._failure("connect", str(error))
        family, port, address = _family(facts)
        packet = milter.connect(facts.client_name or "unknown", family, port, address)
        return await self._stage("connect", Command.CONNECT, "connect", packet)

    async def helo(self, facts: SessionFacts) -> Verdict:
        self.facts = facts
        packet = milter.encode(Command.HELO, milter.strings(facts.helo))
        return await self._stage("helo", Command.HELO, "helo", packet)

    async def mail(self, facts: SessionFacts, sender: str, args: Sequence[str]) -> Verdict:
        self.facts = facts
        self.reset()
        self.skip_message = self.discard = False
        self.mail_macros = {"{mail_addr}": sender, "{mail_host}": _domain(sender)}
        self.rcpt_macros = {}
        packet = milter.encode(Command.MAIL, milter.strings(f"<{sender}>", *args))
        if self.conn is not None and not self.done and not self.failed:
            self.transaction = True
        return await self._stage("mail", Command.MAIL, "mail", packet)

    async def rcpt(self, facts: SessionFacts, recipient: str, args: Sequence[str]) -> Verdict:
        self.facts = facts
        self.rcpt_macros = {"{rcpt_addr}": recipient, "{rcpt_host}": _domain(recipient)}
        packet = milter.encode(Command.RCPT, milter.strings(f"<{recipient}>", *args))
        return await self._stage("rcpt", Command.RCPT, "rcpt", packet)

    def reset(self) -> None:
        if self.transaction and self.conn is not None and not self.conn.closed:
            try:
                self.conn.send([milter.encode(Command.ABORT)])
            except MilterUnavailable as error:
                self.failed = self.failed or str(error)
        self.transaction = False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    # -- the end of the data -------------------------------------------------------------

    async def end(self, message: Message) -> Verdict:
        conn = self.conn
        if self.failed or conn is None:
            return self._default("end", message.queue_id, self.failed or "not connected", log=False)
        if self.done or self.skip_message:
            self.reset()
            return Verdict.discard(f"{self.owner.name}: discard") if self.discard else ACCEPT
        whole = await asyncio.to_thread(message.read_all)
        try:
            answer = await self._content(conn, message.queue_id, whole)
        except MilterUnavailable as error:
            return self._failure("end", str(error), message.queue_id)
        finally:
            self.transaction = False
        if self.discard and isinstance(answer.final, milter.Continue | milter.Accept):
            self._event("end", "discard", "asked for before the data", message.queue_id)
            return Verdict.discard(f"{self.owner.name}: discard")
        return self._at_end(answer, message.queue_id)

    async def _content(self, conn: MilterConnection, queue_id: str, whole: bytes) -> Answer:
        """DATA, the header fields, EOH, the body in chunks, EOM: the final answer with the
        milter's changes (or an earlier refusal, answered as the final one)."""
        timeout = self.settings.message_timeout
        leading = bool(conn.negotiated.protocol & milter.Protocol.HEADER_LEADING_SPACE)
        fields, body = _split(whole, leading)
        steps: list[tuple[Command, bytes, str]] = [
            (Command.DATA, milter.encode(Command.DATA), "data")
        ]
        steps += [(Command.HEADER, milter.header(name, value), "") for name, value in fields]
        steps.append((Command.END_OF_HEADERS, milter.encode(Command.END_OF_HEADERS), "eoh"))
        for command, packet, stage in steps:
            if not conn.sends(command):
                continue
            if stage:
                self._send_macros(conn, command, stage, queue_id)
            answer = await conn.ask(packet, command, timeout=timeout)
            if answer is not None and not isinstance(answer.final, milter.Continue):
                return answer
        if conn.sends(Command.BODY):
            for chunk in milter.body_packets(body):
                answer = await conn.ask(chunk, Command.BODY, timeout=timeout)
                if answer is None or isinstance(answer.final, milter.Continue):
                    continue
                if isinstance(answer.final, milter.Skip):
                    break
                return answer
        self._send_macros(conn, Command.END_OF_MESSAGE, "eom", queue_id)
        answer = await conn.ask(
            milter.encode(Command.END_OF_MESSAGE), Command.END_OF_MESSAGE, timeout=timeout
        )
        assert answer is not None  # the end of the message is always answered
        return answer

    def _at_end(self, answer: Answer, queue_id: str) -> Verdict:
        allowed = self.conn.negotiated.actions if self.conn is not None else milter.Action(0)
        protocol = self.conn.negotiated.protocol if self.conn is not None else milter.Protocol(0)
        changes = _Changes(leading_space=bool(protocol & milter.Protocol.HEADER_LEADING_SPACE))
        for change in answer.modifications:
            needed = _ACTION_NEEDED.get(type(change))
            if needed is not None and not allowed & needed:
                return self._failure("end", f"{type(change).__name__} without asking", queue_id)
            what, detail = changes.take(change)
            if what:
                self._event("end", what, detail, queue_id)
        verdict = self._verdict("end", answer.final, queue_id)
        if verdict.action is not Action.ACCEPT:
            return verdict
        return Verdict(
            action=Action.QUARANTINE if changes.quarantine else Action.ACCEPT,
            reason=f"{self.owner.name}: {changes.quarantine}" if changes.quarantine else "",
            edits=tuple(changes.edits),
            body=changes.body,
            sender=changes.sender,
            add_recipients=tuple(changes.add),
            delete_recipients=tuple(changes.delete),
        )

    # -- underneath ----------------------------------------------------------------------

    async def _stage(self, stage: str, command: Command, macros: str, packet: bytes) -> Verdict:
        conn = self.conn
        if self.failed or conn is None:
            return self._default(stage, "", self.failed or "not connected", log=False)
        if self.done or (self.skip_message and stage == "rcpt") or not conn.sends(command):
            return ACCEPT
        try:
            self._send_macros(conn, command, macros, "")
            answer = await conn.ask(packet, command)
        except MilterUnavailable as error:
            return self._failure(stage, str(error))
        return ACCEPT if answer is None else self._verdict(stage, answer.final, "")

    def _verdict(self, stage: str, final: milter.Reply, queue_id: str) -> Verdict:
        name = self.owner.name
        match final:
            case milter.Continue():
                return ACCEPT
            case milter.Accept():
                if stage in ("connect", "helo"):
                    self.done = True
                elif stage != "end":
                    self.skip_message = True
                self._event(stage, "accept", "", queue_id)
                return ACCEPT
            case milter.Reject():
                self._event(stage, "reject", str(R_REJECTED), queue_id)
                return Verdict.reject(R_REJECTED, f"{name}: reject")
            case milter.Tempfail() | milter.ConnectionFail():
                self._event(stage, "tempfail", str(R_TEMPFAIL), queue_id)
                return Verdict.defer(R_TEMPFAIL, f"{name}: tempfail")
            case milter.ReplyWithCode(code=code, text=text):
                answer = _reply(code, text)
                self._event(stage, "replycode", str(answer), queue_id)
                if code >= 500:
                    return Verdict.reject(answer, f"{name}: replycode")
                return Verdict.defer(answer, f"{name}: replycode")
            case milter.Discard():
                self._event(stage, "discard", "", queue_id)
                if stage == "end":
                    return Verdict.discard(f"{name}: discard")
                self.discard = self.skip_message = True
                return ACCEPT
            case milter.Shutdown():
                return self._failure(stage, "shut down", queue_id)
        return self._failure(stage, f"answered with {type(final).__name__}", queue_id)

    def _failure(self, stage: str, what: str, queue_id: str = "") -> Verdict:
        self.failed = f"milter {self.owner.name}: {what}"
        self.transaction = False
        if self.conn is not None:
            self.conn.close(quit=False)
        return self._default(stage, queue_id, self.failed, log=True)

    def _default(self, stage: str, queue_id: str, why: str, *, log: bool) -> Verdict:
        """The default action of a milter that failed (``log``: now, with an event)."""
        action = str(self.settings.default_action)
        if log:
            self._event(stage, f"failed: default_action {action}", why, queue_id)
        if action == "accept":
            return Verdict.accept(reason=f"{why}; accepted unchecked") if log else ACCEPT
        if stage in ("connect", "helo"):
            # Not refused yet: the transaction is (the client may still QUIT cleanly).
            return Verdict.accept(reason=f"{why}; mail will be deferred") if log else ACCEPT
        return Verdict.defer(R_TEMPFAIL, f"{why}; sender told to try again")

    def _send_macros(
        self, conn: MilterConnection, command: Command, stage: str, queue_id: str
    ) -> None:
        asked = conn.negotiated.macros.get(milter.MACRO_STAGES[stage])
        names = asked if asked is not None else self.owner.macros.get(stage, ())
        values = self._macro_values(queue_id)
        chosen = {name: values[name] for name in names if name in values}
        if chosen:
            conn.send([milter.macros(command, chosen)])

    def _macro_values(self, queue_id: str) -> Mapping[str, str]:
        facts, owner = self.facts, self.owner
        name = facts.client_name or "unknown"
        values = {
            "j": owner.hostname,
            "{daemon_name}": owner.hostname,
            "{daemon_addr}": facts.server_ip,
            "{daemon_port}": str(facts.server_port),
            "v": f"Hato {__version__}",
            "_": f"{name} [{facts.client_ip}]",
            "{client_addr}": facts.client_ip,
            "{client_name}": name,
            "{client_port}": str(facts.client_port),
            "{client_ptr}": name,
            **self.mail_macros,
            **self.rcpt_macros,
        }
        if facts.tls_version:
            values["{tls_version}"], values["{cipher}"] = facts.tls_version, facts.cipher
        if facts.auth_user:
            values["{auth_authen}"], values["{auth_type}"] = facts.auth_user, "PLAIN"
        if queue_id:
            values["i"] = queue_id
        return values

    def _event(self, stage: str, action: str, detail: str, queue_id: str) -> None:
        self.owner.log.emit(
            MilterAction(
                session=self.facts.session_id,
                queue_id=queue_id,
                milter=self.owner.name,
                stage=stage,
                action=action,
                detail=detail[:500],
            )
        )


_ACTION_NEEDED: dict[type, milter.Action] = {
    milter.AddHeader: milter.Action.ADD_HEADERS,
    milter.InsertHeader: milter.Action.ADD_HEADERS,
    milter.ChangeHeader: milter.Action.CHANGE_HEADERS,
    milter.ReplaceBody: milter.Action.CHANGE_BODY,
    milter.ChangeFrom: milter.Action.CHANGE_FROM,
    milter.DeleteRecipient: milter.Action.DELETE_RECIPIENTS,
    milter.Quarantine: milter.Action.QUARANTINE,
}


@dataclass(slots=True)
class _Changes:
    """The modifications of one end of message, in the order they came."""

    edits: list[HeaderEdit] = field(default_factory=list)
    body: bytes | None = None
    sender: str | None = None
    add: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    quarantine: str = ""
    # Values come with their leading space (HEADER_LEADING_SPACE negotiated), or without.
    leading_space: bool = False

    def _value(self, value: bytes) -> bytes:
        return value if self.leading_space else b" " + value

    def take(self, change: milter.Reply) -> tuple[str, str]:
        """Note one modification; its action word and detail for the event ("": none)."""
        match change:
            case milter.AddHeader(name=name, value=value):
                self.edits.append(HeaderEdit(action="add", name=name, value=self._value(value)))
                return "addheader", name
            case milter.InsertHeader(index=index, name=name, value=value):
                edit = HeaderEdit(action="insert", name=name, value=self._value(value), index=index)
                self.edits.append(edit)
                return "insheader", f"{name} at {index}"
            case milter.ChangeHeader(index=index, name=name, value=value):
                edit = HeaderEdit(action="change", name=name, value=self._value(value), index=index)
                self.edits.append(edit)
                return ("chgheader" if value.strip() else "delheader"), f"{name}[{index}]"
            case milter.ChangeFrom(sender=sender):
                self.sender = _path(sender)
                return "chgfrom", sender
            case milter.AddRecipient(recipient=recipient):
                self.add.append(_path(recipient))
                return "addrcpt", recipient
            case milter.DeleteRecipient(recipient=recipient):
                self.delete.append(_path(recipient))
                return "delrcpt", recipient
            case milter.ReplaceBody(chunk=chunk):
                first = self.body is None
                self.body = (self.body or b"") + chunk
                return ("replbody", "") if first else ("", "")
            case milter.Quarantine(reason=reason):
                self.quarantine = reason or "quarantined"
                return "quarantine", reason
        return "", ""


def _split(whole: bytes, leading_space: bool) -> tuple[list[tuple[str, bytes]], bytes]:
    """The header fields as a milter is sent them (name, value folded with LF) and the body."""
    if whole.startswith(b"\r\n"):
        section, body = b"", whole[2:]
    else:
        end = whole.find(b"\r\n\r\n")
        section, body = (whole[: end + 2], whole[end + 4 :]) if end >= 0 else (whole, b"")
    header = parse_header(section)
    fields = []
    for (name, _), (start, stop) in zip(header.fields, header.spans, strict=True):
        raw = section[start:stop].rstrip(b"\r\n")
        value = raw.split(b":", 1)[1].replace(b"\r\n", b"\n")
        if not leading_space and value[:1] in (b" ", b"\t"):
            value = value[1:]
        fields.append((name, value))
    return fields, body


def _family(facts: SessionFacts) -> tuple[Family, int, str]:
    if facts.listener == "local":
        return Family.UNKNOWN, 0, ""
    if ":" in facts.client_ip:
        return Family.INET6, facts.client_port, facts.client_ip
    return Family.INET, facts.client_port, facts.client_ip


def _reply(code: int, text: str) -> Reply:
    """A milter's own reply; its text kept printable, its enhanced code only if it fits."""
    lines = [line for line in text.replace("\r", "\n").split("\n") if line] or ["Command rejected"]
    words = []
    for line in lines:
        head = line[:4]
        if len(head) == 4 and head[:3].isdigit() and head[3] in " -":
            line = line[4:]
        words.append("".join(c if c.isprintable() else "?" for c in line))
    try:
        found = parse_reply(f"{code} {words[0]}")
    except ValueError:
        return Reply(code, None, tuple(words))
    rest = (
        [w.removeprefix(f"{found.enhanced} ") for w in words[1:]] if found.enhanced else words[1:]
    )
    return Reply(code, found.enhanced, (*found.lines, *rest))


def _path(text: str) -> str:
    address = text.strip()
    return address[1:-1] if address.startswith("<") and address.endswith(">") else address


def _domain(address: str) -> str:
    return address.rpartition("@")[2] if "@" in address else ""
