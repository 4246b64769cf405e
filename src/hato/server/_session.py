"""One SMTP connection: sockets, timers and TLS around the engine; everything else it asks.

The session is where the engine, the socket and the collaborators meet: the per-stage
checks (:class:`._checks.ClientChecks`), AUTH (:class:`._auth.Authenticator`), the
submission rules (:class:`._submission.SubmissionRules`) and the intake
(:class:`~hato.spool.Intake`). It answers each event with a typed
:class:`~hato.smtp.Reply`; one loop (:meth:`Session._process`) writes everything the
engine has to say in one write per batch, which is what makes pipelined clients cheap.
Whatever must wait (DNS, a password, the disk, a TLS handshake) runs through
:meth:`Session._suspend`: the engine is not asked for more events until the reply is out.
A ``250`` after the data is sent only once the intake's ``finish`` has returned
``Accepted``, i.e. the message is durable.

STARTTLS (RFC 3207): the session answers 220, hands the socket to ``loop.start_tls`` and
tells the engine once the handshake is done; the engine has already dropped whatever the
client pipelined after STARTTLS (CVE-2011-0411), and the session starts over inside TLS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Awaitable
from typing import cast

from .. import __version__, mailauth, policy, smtp
from ..events import (
    Connected,
    Disconnected,
    HeloReceived,
    InternalError,
    MailAccepted,
    ProxyRefused,
    RcptAccepted,
    Rejected,
    TlsFailed,
    TlsStarted,
)
from ..smtp import Reply, reply
from ..spool import Accepted, IncomingMessage, Origin, Refusal, SessionFacts, SessionStages
from ._auth import Credentials, SaslExchange
from ._checks import ClientChecks, UserdbQuestion, sender_syntax
from ._context import ServerContext
from ._proxy import ProxyHeader, starts_like_proxy_header
from ._received import ClientFacts
from ._registry import Sessions
from ._tls import session_description
from ._transfer import Transfer, envelope_for

__all__ = ["TLS_HANDSHAKE_TIMEOUT", "Session"]

# Replies named once; texts follow what Postfix administrators already know.
R_DATA_GO = reply(354, None, "End data with <CR><LF>.<CR><LF>")
R_MAIL_OK = reply(250, "2.1.0", "Ok")
R_RCPT_OK = reply(250, "2.1.5", "Ok")
R_WRITE_ERROR = reply(451, "4.3.0", "Error: queue file write error, try again later")
R_INTERNAL = reply(421, "4.3.0", "Error: internal server error, closing connection")
R_TLS_GO = reply(220, "2.0.0", "Ready to start TLS")  # RFC 3207 4
# Input buffered while the session waits for the disk: past this, stop reading.
MAX_BUFFERED = 1 << 20
# Reverse DNS is a courtesy for the Received header; it must never hold a client long.
RDNS_TIMEOUT = 5.0
# A client that asked for TLS and then does not finish the handshake holds a connection
# for nothing; this bounds it as the idle timeout bounds a silent client.
TLS_HANDSHAKE_TIMEOUT = 30.0


class Session(asyncio.Protocol):
    checks: ClientChecks  # this connection's checks, from connection_made on

    def __init__(
        self,
        context: ServerContext,
        sessions: Sessions,
        listener: str,
        *,
        implicit_tls: bool = False,
        submission: bool = False,
        proxy: tuple[ProxyHeader, str] | None = None,
    ) -> None:
        """``proxy``: the PROXY header a listed proxy sent, and that proxy's address; set
        (even to None) only on a server that reads PROXY headers, where a client that is
        not a listed proxy but sends one is refused."""
        self.ctx = context
        self.sessions = sessions
        self.listener = listener
        self.id = sessions.new_id()
        self.conn = smtp.ServerConnection(
            context.hostname,
            context.limits,
            # Submission offers STARTTLS whenever there is a certificate (RFC 8314 3.3).
            tls_available=context.starttls or implicit_tls or (submission and bool(context.tls)),
            tls_active=implicit_tls,
        )
        if context.record_lines is not None:
            self.conn.transcript = []  # drained into the flight recorder at each write
        self.implicit_tls = implicit_tls
        self.submission = submission
        self.auth_user: str | None = None
        self._sasl = SaslExchange()
        self.tls: str | None = None  # "TLSv1.3 TLS_AES_256_GCM_SHA384" once TLS is up
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.server_ip = ""
        self.client_port = 0
        self.client_name: str | None = None
        self.started = time.monotonic()
        self.last_activity = self.started
        self.busy = True  # until the banner is out; then while waiting on DNS or the disk
        self.transfer = Transfer(context.intake, context.log, self.id)  # the message
        self.messages = 0
        self.recipients = 0
        self.close_reason = "client closed"
        self._timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._write_blocked = False
        self._task: asyncio.Task[None] | None = None
        self._handshaking = False
        self._early = bytearray()  # plaintext that arrived before start_tls() returned
        self._lost = False
        # The filters that take part before the data (milters), from connect on.
        self.kind = "implicit_tls" if implicit_tls else "submission" if submission else "smtp"
        self.stages: SessionStages | None = None
        self._proxy = proxy
        self._watch_for_proxy = proxy is None and bool(context.settings.server.proxy_protocol_from)
        self._offer_auth()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but implement it.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername") or ("", 0)
        local = self.transport.get_extra_info("sockname") or ("",)
        via = ""
        if self._proxy is not None:
            header, via = self._proxy
            if header.client is not None and header.server is not None:
                peer, local = header.client, header.server
        self.client_ip, self.client_port = str(peer[0]), int(peer[1])
        self.server_ip = str(local[0])
        self.checks = self.ctx.checks.client(
            self.conn, client_ip=self.client_ip, server_ip=self.server_ip, session=self.id
        )
        self.sessions.open.add(self)
        if self.ctx.stages is not None:
            self.stages = self.ctx.stages(self.kind, self.id)
        self.ctx.log.emit(
            Connected(
                session=self.id,
                client_ip=self.client_ip,
                client_port=self.client_port,
                listener=self.listener,
                via=via,
            )
        )
        if self.implicit_tls:
            # The listener finished the handshake before calling connection_made.
            self._tls_up(self.transport.get_extra_info("ssl_object"))
        self._arm_timer()
        refusal = self.checks.admit()
        waits = self.ctx.reverse_lookup is not None or self.checks.lookups or self.stages
        if refusal is None and waits:
            self._suspend(self._look_up())
        else:
            self._greet(refusal)
            self._answer(None)

    def data_received(self, data: bytes) -> None:
        # smtp.idle_timeout is the time for a complete command line (an AUTH answer too): a
        # line dripped a byte at a time does not renew it. Message data renews it with every
        # read, however small, as Postfix's smtpd_timeout does.
        if b"\n" in data or self.conn.in_message:
            self.last_activity = time.monotonic()
        if self._watch_for_proxy:
            self._watch_for_proxy = False
            if starts_like_proxy_header(data):
                self._refuse_proxy_header()
                return
        if self._handshaking:
            # Decrypted already: the TLS layer may deliver the client's first command before
            # start_tls() has returned to us. Plaintext never arrives here in this state.
            self._early += data
            return
        self.conn.receive_data(data)
        if not self.busy:
            self._process()
        elif self.conn.buffered > MAX_BUFFERED:
            self._pause()

    def _refuse_proxy_header(self) -> None:
        """A PROXY header from a client that is no listed proxy: it would forge addresses."""
        self.ctx.log.emit(
            ProxyRefused(
                client_ip=self.client_ip,
                client_port=self.client_port,
                listener=self.listener,
                reason="PROXY header from an address not in server.proxy_protocol_from",
            )
        )
        self.close_reason = "refused: PROXY header from an unlisted address"
        self.conn.close_with(reply(421, "4.7.0", "Error: PROXY header not accepted from you"))
        self._flush()

    def eof_received(self) -> bool | None:
        self.close_reason = "client sent EOF"
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return  # a failed handshake already ended the session
        self._lost = True
        self._record()
        if exc is not None:
            self.close_reason = f"connection lost: {exc}"
        self.transfer.abort()
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.checks.close()
        if self.stages is not None:
            self.stages.close()
        self.sessions.open.discard(self)
        self.ctx.log.emit(
            Disconnected(
                session=self.id,
                client_ip=self.client_ip,
                messages=self.messages,
                recipients=self.recipients,
                errors=self.conn.errors,
                seconds=round(time.monotonic() - self.started, 6),
                reason=self.close_reason,
            )
        )

    def pause_writing(self) -> None:
        # A client that does not read its replies does not get to send more commands.
        self._write_blocked = True
        self._pause()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self._flush()

    def _pause(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    # -- the greeting ------------------------------------------------------------------

    async def _look_up(self) -> None:
        """Reverse DNS and the DNS blocklists, all at once, before the banner; then the
        filters' connect stage, unless the rules refuse the client first."""
        await asyncio.gather(self._look_up_name(), self.checks.look_up())
        refusal = None
        if self.stages is not None and not self.sessions.stopping:
            refusal = self._ban() or self.checks.connect()
            if refusal is None:
                refusal = _decision(await self.stages.connect(self._stage_facts()))
        self._greet(refusal)

    async def _look_up_name(self) -> None:
        lookup = self.ctx.reverse_lookup
        if lookup is None:
            return
        try:
            async with asyncio.timeout(RDNS_TIMEOUT):
                self.client_name = await lookup(self.client_ip)
        except (TimeoutError, OSError):
            self.client_name = None

    def _greet(self, refusal: policy.Decision | None) -> None:
        """The banner, or the refusal of the connection (limits, an AUTH ban, the rules)."""
        if self.sessions.stopping:
            self.conn.close_with(_shutdown_reply(self.ctx.hostname))
        elif (refusal := refusal or self._ban() or self.checks.connect()) is not None:
            self._rejected("CONNECT", refusal)
            self.close_reason = f"refused: {refusal.reason}"
            if refusal.reply.code == 554:
                self.conn.send_greeting(refusal.reply)  # then only QUIT (RFC 5321 3.1)
            else:
                self.conn.close_with(refusal.reply)
        else:
            self.conn.send_greeting(
                reply(220, None, f"{self.ctx.hostname} ESMTP Hato {__version__} ready")
            )

    # -- waiting, and the one loop that answers and writes -------------------------------

    def _suspend(self, work: Awaitable[Reply | None]) -> None:
        """Run ``work`` with the engine on hold, then answer with the reply it returns."""
        self.busy = True
        self._task = asyncio.ensure_future(self._resume(work))

    async def _resume(self, work: Awaitable[Reply | None]) -> None:
        answer = await work
        if self.transport is None or self.transport.is_closing():
            return  # the client left; an accepted message is queued all the same
        self._answer(answer)

    def _answer(self, answer: Reply | None) -> None:
        if answer is not None:
            if answer.code == 421:  # RFC 5321 3.8: the server closes after a 421
                self.conn.close_with(answer)
            else:
                self.conn.send_reply(answer)
        self.busy = False
        self._process()

    def _process(self) -> None:
        conn, stopping = self.conn, self.sessions
        try:
            while not self.busy:
                if stopping.stopping and not conn.in_message:
                    break  # only the message in transfer may finish; no new command is run
                event = conn.next_event()
                if event is smtp.NEED_DATA or event is smtp.PAUSED or event is smtp.CLOSED:
                    break
                self._handle(event)
            if stopping.stopping and not self.busy and not conn.in_message and not conn.closed:
                conn.close_with(_shutdown_reply(self.ctx.hostname))
        except Exception as error:  # our bug: end this session cleanly, keep the server
            self.ctx.log.emit(InternalError(where="session", error=repr(error), session=self.id))
            self.transfer.abort()
            conn.close_with(R_INTERNAL)
            self.close_reason = "internal error"
        self._flush()

    def _record(self) -> None:
        lines = self.conn.transcript
        if lines and self.ctx.record_lines is not None:
            self.conn.transcript = []
            self.ctx.record_lines(self.id, lines, time.time())

    def _flush(self) -> None:
        self._record()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        out = self.conn.data_to_send()
        if out:
            transport.write(out)
        if self.conn.closed:
            if self.close_reason == "client closed":
                self.close_reason = "server closed"
            transport.close()
        elif self._reading_paused and not self.busy and not self._write_blocked:
            self._reading_paused = False
            transport.resume_reading()

    def _handle(self, event: smtp.Event) -> None:
        conn = self.conn
        match event:
            case smtp.DataChunk(data=data):
                self._write(data)
            case smtp.Hello(name=name, extended=extended):
                self.transfer.abort()
                self.ctx.log.emit(HeloReceived(session=self.id, helo=name, extended=extended))
                decision = self.checks.helo(name)
                if decision is not None:
                    self._refuse("EHLO" if extended else "HELO", decision, helo=name)
                elif self.stages is not None:
                    self.stages.reset()
                    self._suspend(self._helo_staged(name, extended))
                else:
                    conn.send_reply(self._hello_reply(name, extended))
            case smtp.MailFrom():
                self._mail(event)
            case smtp.RcptTo():
                self._rcpt(event)
            case smtp.DataCommand():
                decision = self.checks.data()
                if decision is None and not self._open_message():
                    decision = policy.Decision(reply=R_WRITE_ERROR, reason="spool error")
                if decision is not None:
                    self._refuse("DATA", decision)
                else:
                    conn.send_reply(R_DATA_GO)
            case smtp.MessageEnd(problem=problem):
                self._end_message(problem)
            case smtp.Reset():
                self.transfer.abort()
                if self.stages is not None:
                    self.stages.reset()
            case smtp.CommandRejected(command=command, reply=refusal):
                if conn.transaction is None:
                    self.transfer.abort()
                self._rejected(command, policy.Decision(reply=refusal, reason="protocol"))
            case smtp.StartTls() if self.ctx.tls is not None:
                conn.send_reply(R_TLS_GO)
                self._suspend(self._start_tls())
            case smtp.AuthStart(mechanism=mechanism, initial_response=initial):
                self._auth_start(mechanism, initial)
            case smtp.AuthResponse(data=data):
                self._auth_step(self._sasl.respond(data))
            case smtp.StartTls():
                # The engine only offers STARTTLS when configured.
                conn.send_reply(reply(502, "5.5.1", "Error: command not implemented"))

    def _hello_reply(self, name: str, extended: bool) -> Reply:
        greeting = f"{self.ctx.hostname} Hello {name} [{self.client_ip}]"
        if extended:
            return Reply(250, None, (greeting, *self.conn.ehlo_keywords()))
        return reply(250, None, greeting)

    def _refuse(self, command: str, decision: policy.Decision, **facts: str) -> None:
        self._rejected(command, decision, **facts)
        self.conn.send_reply(decision.reply)

    def _rejected(self, command: str, decision: policy.Decision, **facts: str) -> None:
        """One event per refusal: stage, rule, client, HELO, sender, recipient and reply.

        HELO and sender are the session's own unless ``facts`` has the ones being refused.
        """
        transaction = self.conn.transaction
        sender = transaction.reverse_path if transaction is not None else None
        self.ctx.log.emit(
            Rejected(
                session=self.id,
                client_ip=self.client_ip,
                command=command,
                reply=str(decision.reply),
                reason=decision.reason,
                rule=decision.rule,
                helo=facts.get("helo", self.conn.helo or ""),
                sender=facts.get("sender", sender),
                recipient=facts.get("recipient", ""),
            )
        )

    # -- the commands ------------------------------------------------------------------

    def _mail(self, event: smtp.MailFrom) -> None:
        sender = event.reverse_path
        decision = sender_syntax(sender)
        # Submission wants AUTH first; whoever authenticated, on any listener, sends only as
        # an address the user owns (RFC 6409 6.1; RFC 8314 makes implicit TLS submission too).
        if decision is None and (self.submission or self.auth_user is not None):
            conn = self.conn
            # AUTH offered only inside TLS: asking for it would send the client nowhere.
            starttls_first = not conn.auth_mechanisms and self.tls is None and conn.tls_available
            decision = self.ctx.submission.mail(
                sender, user=self.auth_user, starttls_first=starttls_first
            )
        if decision is None and (self.checks.wants_spf or self.stages is not None):
            self._suspend(self._mail_after_spf(event))
            return
        self.conn.send_reply(self._mail_checked(event, decision))

    async def _mail_after_spf(self, event: smtp.MailFrom) -> Reply:
        spf = await self.checks.check_spf(event.reverse_path) if self.checks.wants_spf else None
        answer = self._mail_checked(event, None, spf)
        if self.stages is None or answer.code != 250:
            return answer
        sender = event.reverse_path
        refusal = await self.stages.mail(self._stage_facts(), sender, ())
        if refusal is None:
            return answer
        self._rejected("MAIL", policy.Decision(reply=refusal.reply, reason=refusal.reason))
        return refusal.reply

    async def _helo_staged(self, name: str, extended: bool) -> Reply:
        assert self.stages is not None
        facts = dataclasses.replace(self._stage_facts(), helo=name)
        refusal = await self.stages.helo(facts)
        if refusal is None:
            return self._hello_reply(name, extended)
        decision = policy.Decision(reply=refusal.reply, reason=refusal.reason)
        self._rejected("EHLO" if extended else "HELO", decision, helo=name)
        return refusal.reply

    async def _rcpt_staged(self, event: smtp.RcptTo) -> Reply:
        assert self.stages is not None
        address = event.forward_path
        refusal = await self.stages.rcpt(self._stage_facts(), address, ())
        if refusal is not None:
            decision = policy.Decision(reply=refusal.reply, reason=refusal.reason)
            self._rejected("RCPT", decision, recipient=address)
            return refusal.reply
        self._rcpt_accepted(event)
        return R_RCPT_OK

    def _stage_facts(self) -> SessionFacts:
        version, _, cipher = (self.tls or "").partition(" ")
        local = self.transport.get_extra_info("sockname") if self.transport else None
        return SessionFacts(
            session_id=self.id,
            listener=self.kind,
            client_ip=self.client_ip,
            client_port=self.client_port,
            client_name=self.client_name,
            server_ip=self.server_ip,
            server_port=int(local[1]) if local and len(local) > 1 else 0,
            helo=self.conn.helo or "",
            tls_version=version,
            cipher=cipher,
            auth_user=self.auth_user,
        )

    def _mail_checked(
        self,
        event: smtp.MailFrom,
        decision: policy.Decision | None,
        spf: mailauth.SpfResult | None = None,
    ) -> Reply:
        sender = event.reverse_path
        decision = decision or self.checks.mail(sender, spf)
        if decision is not None:
            self._rejected("MAIL", decision, sender=sender)
            return decision.reply
        params = event.params
        self.ctx.log.emit(
            MailAccepted(
                session=self.id,
                reverse_path=sender,
                params={
                    k: v for k in params.__slots__ if (v := getattr(params, k)) not in (None, False)
                },
            )
        )
        return R_MAIL_OK

    def _rcpt(self, event: smtp.RcptTo) -> None:
        address = event.forward_path
        decision = self.checks.rcpt(address)
        if isinstance(decision, UserdbQuestion):
            self._suspend(self._rcpt_userdb(event, decision))
            return
        if decision is not None:
            self._refuse("RCPT", decision, recipient=address)
            return
        if self.stages is not None:
            self._suspend(self._rcpt_staged(event))
            return
        self._rcpt_accepted(event)
        self.conn.send_reply(R_RCPT_OK)

    async def _rcpt_userdb(self, event: smtp.RcptTo, question: UserdbQuestion) -> Reply:
        """accounts.userdb: the user database decides while the session waits."""
        decision = await self.checks.ask_userdb(question)
        if decision is not None:
            self._rejected("RCPT", decision, recipient=event.forward_path)
            return decision.reply
        if self.stages is not None:
            return await self._rcpt_staged(event)
        self._rcpt_accepted(event)
        return R_RCPT_OK

    def _rcpt_accepted(self, event: smtp.RcptTo) -> None:
        address, params = event.forward_path, event.params
        self.ctx.log.emit(
            RcptAccepted(
                session=self.id,
                recipient=address,
                params={"notify": list(params.notify), "orcpt": params.orcpt},
            )
        )

    # -- AUTH (RFC 4954) -----------------------------------------------------------------

    def _offer_auth(self) -> None:
        auth, conn = self.ctx.auth, self.conn
        secure = self.implicit_tls or self.tls is not None
        conn.auth_mechanisms = auth.offered(tls=secure) if auth is not None else ()
        offered = auth is not None and bool(auth.mechanisms)
        conn.auth_needs_tls = offered and not conn.auth_mechanisms and conn.tls_available

    def _ban(self) -> policy.Decision | None:
        return self.ctx.auth.ban(self.client_ip) if self.ctx.auth is not None else None

    def _auth_start(self, mechanism: str, initial: str | None) -> None:
        banned = self._ban()
        if banned is not None:
            self._rejected("AUTH", banned)
            self.conn.close_with(banned.reply)
            self.close_reason = "banned"
            return
        self._auth_step(self._sasl.start(mechanism, initial))

    def _auth_step(self, step: Reply | Credentials | policy.Decision) -> None:
        if isinstance(step, Credentials):
            self._suspend(self._authenticate(step))
        elif isinstance(step, policy.Decision):
            self._refuse("AUTH", step)
        else:
            self.conn.send_reply(step)  # the next challenge

    async def _authenticate(self, credentials: Credentials) -> Reply:
        auth = self.ctx.auth
        assert auth is not None  # the engine takes AUTH only when mechanisms are offered
        outcome = await auth.verify(credentials, client_ip=self.client_ip, session=self.id)
        if outcome.refusal is not None:
            self._rejected("AUTH", outcome.refusal)
        if outcome.user is not None:
            self.auth_user = outcome.user
        if outcome.reply.code == 421:
            self.close_reason = "too many failed authentications"
        return outcome.reply

    # -- the message -------------------------------------------------------------------

    def _facts(self) -> ClientFacts:
        return ClientFacts(
            ip=self.client_ip,
            name=self.client_name,
            helo=self.conn.helo or "",
            extended=self.conn.extended,
            tls=self.tls,
            auth=self.auth_user,
        )

    def _open_message(self) -> bool:
        """Hand the message to the intake; False if the spool cannot take it."""
        transaction = self.conn.transaction
        assert transaction is not None
        origin = Origin.SUBMISSION if self.submission else Origin.SMTP
        envelope = envelope_for(transaction, self._facts(), session=self.id)
        spf, annotations = self.checks.spf, dict[str, object]()
        if spf is not None:
            annotations["spf"] = spf
        if self.stages is not None:
            annotations["stages"] = self.stages  # the same filters see the data at the end
        return self.transfer.open(envelope, origin, annotations)

    def _write(self, data: bytes) -> None:
        # The first BDAT chunk opens the message (DATA opened it at 354).
        if not self.transfer.active and not self.transfer.failed:
            self._open_message()
        self.transfer.write(data)

    def _end_message(self, problem: Reply | None) -> None:
        transaction = self.conn.transaction
        if problem is None and transaction is not None and transaction.chunked:
            # BDAT has no moment before the data: its data rules answer the LAST chunk.
            decision = self.checks.data()
            if decision is not None:
                self.transfer.abort()
                self._refuse("BDAT", decision)
                return
        if problem is None and not self.transfer.active and not self.transfer.failed:
            self._write(b"")  # BDAT 0 LAST as the only chunk: an empty message
        message = self.transfer.take() if problem is None else None
        if message is None:
            self.transfer.abort()
            reason = "message refused" if problem is not None else "spool error"
            self._refuse("DATA", policy.Decision(reply=problem or R_WRITE_ERROR, reason=reason))
            return
        assert transaction is not None
        self._suspend(self._finish(message, len(transaction.recipients)))

    async def _finish(self, message: IncomingMessage, recipients: int) -> Reply:
        # The intake keeps a message it has started to store even if the client leaves.
        outcome = await message.finish()
        if self.stages is not None:
            self.stages.reset()  # a filter the message did not reach forgets it
        if isinstance(outcome, Accepted):
            self.messages += 1
            self.recipients += recipients
            return reply(250, "2.0.0", f"Ok: queued as {outcome.queue_id}")
        self._rejected("DATA", policy.Decision(reply=outcome.reply, reason=outcome.reason))
        return outcome.reply

    # -- TLS -----------------------------------------------------------------------------

    async def _start_tls(self) -> None:
        # _process has written the 220 (in the clear) before this task first runs.
        transport, tls = self.transport, self.ctx.tls
        assert transport is not None and tls is not None
        if transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        # From the start_tls() call on, the socket belongs to the TLS layer: everything that
        # reaches data_received is decrypted. No await lies between the flag and that switch.
        self._handshaking = True
        try:
            upgraded = await loop.start_tls(
                transport,
                self,
                tls.context_for(submission=self.submission),
                server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
            self._handshake_failed(error)
            return
        finally:
            self._handshaking = False
        if upgraded is None:  # typeshed allows it; asyncio and uvloop never return None
            self._handshake_failed(ConnectionError("start_tls() returned no transport"))
            return
        # uvloop returns a new transport object; pausing and the writes go to it from now.
        self.transport = upgraded
        self._reading_paused = self._write_blocked = False
        self.last_activity = time.monotonic()
        self.conn.tls_established()
        self.auth_user = None  # RFC 3207 4.2: nothing learnt before TLS is kept
        self._tls_up(upgraded.get_extra_info("ssl_object"))
        early, self._early = bytes(self._early), bytearray()
        if early:
            self.conn.receive_data(early)

    def _tls_up(self, ssl_object: ssl.SSLObject | None) -> None:
        version, cipher = session_description(ssl_object)
        self.tls = f"{version} {cipher}"
        self._offer_auth()
        self.ctx.log.emit(
            TlsStarted(session=self.id, version=version, cipher=cipher, implicit=self.implicit_tls)
        )

    def _handshake_failed(self, error: BaseException) -> None:
        reason = str(error) or type(error).__name__
        self.ctx.log.emit(TlsFailed(session=self.id, client_ip=self.client_ip, reason=reason))
        self.close_reason = f"TLS handshake failed: {reason}"
        if self.transport is not None:
            self.transport.abort()
        # The TLS layer does not report connection_lost for a handshake that never finished.
        self.connection_lost(None)

    # -- timeouts and shutdown ---------------------------------------------------------

    def _arm_timer(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.ctx.settings.smtp.idle_timeout
        due = self.last_activity + timeout
        self._timer = loop.call_at(loop.time() + max(0.0, due - time.monotonic()), self._tick)

    def _tick(self) -> None:
        idle = time.monotonic() - self.last_activity
        if self.busy and not self.transfer.active and self._task is not None:
            # Waiting on our own disk or DNS is not the client's idleness.
            self.last_activity = time.monotonic()
        elif idle >= self.ctx.settings.smtp.idle_timeout:
            self.transfer.abort()
            self.conn.close_with(
                reply(421, "4.4.2", f"{self.ctx.hostname} Error: timeout exceeded")
            )
            self.close_reason = "idle timeout"
            self._flush()
            return
        self._arm_timer()

    def shutdown(self, *, force: bool) -> None:
        """Server stopping: close now unless a message is mid-transfer (and not forced)."""
        if self.conn.closed:
            return
        if not force and (self.busy or self.conn.in_message):
            return  # _process closes it after the message is answered
        if self._handshaking:
            if force:
                self.close_reason = "server shutdown"
                if self.transport is not None:
                    self.transport.abort()  # start_tls() fails, which ends the session
            return
        if force and self._task is not None and not self._task.done() and not self.transfer.active:
            return  # a commit is in flight: its 250 is owed; it closes after
        self.transfer.abort()
        self.conn.close_with(_shutdown_reply(self.ctx.hostname))
        self.close_reason = "server shutdown"
        self._flush()


def _decision(refusal: Refusal | None) -> policy.Decision | None:
    return None if refusal is None else policy.Decision(reply=refusal.reply, reason=refusal.reason)


def _shutdown_reply(hostname: str) -> Reply:
    return reply(421, "4.3.2", f"{hostname} Service shutting down, closing transmission channel")
