"""One SMTP connection: feeds the engine, answers its events, streams DATA into the spool.

The session is the only place where the engine, the socket and the spool meet. It
answers each event with a typed :class:`~hato.smtp.Reply`; one loop
(:meth:`Session._process`) writes everything the engine has to say in one write per
batch, which is what makes pipelined clients cheap. A ``250`` after the data is sent
only once the intake's ``finish`` has returned ``Accepted``, i.e. the message is durable.

STARTTLS (RFC 3207): the session answers 220, hands the socket to ``loop.start_tls`` and
tells the engine once the handshake is done; the engine has already dropped whatever the
client pipelined after STARTTLS (CVE-2011-0411), and the session starts over inside TLS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from typing import TYPE_CHECKING, Any, cast

from .. import __version__, policy, routing, smtp
from ..accounts import AccountError, InvalidInput, parse_address
from ..events import (
    AuthSucceeded,
    Connected,
    Disconnected,
    DnsblUnavailable,
    HeloReceived,
    InternalError,
    MailAccepted,
    RcptAccepted,
    Rejected,
    TlsFailed,
    TlsStarted,
)
from ..smtp import Reply, reply
from ..spool import Accepted, Envelope, IncomingMessage, Origin, Recipient, SpoolError
from ._received import ClientFacts, protocol_name
from ._sasl import LOGIN_PASSWORD, LOGIN_USERNAME, SaslError, decode_login, decode_plain
from ._tls import session_description

if TYPE_CHECKING:
    from ._context import ServerContext

__all__ = ["TLS_HANDSHAKE_TIMEOUT", "Session"]

# Replies named once; texts follow what Postfix administrators already know.
R_DATA_GO = reply(354, None, "End data with <CR><LF>.<CR><LF>")
R_MAIL_OK = reply(250, "2.1.0", "Ok")
R_RCPT_OK = reply(250, "2.1.5", "Ok")
R_WRITE_ERROR = reply(451, "4.3.0", "Error: queue file write error, try again later")
R_INTERNAL = reply(421, "4.3.0", "Error: internal server error, closing connection")
R_TLS_GO = reply(220, "2.0.0", "Ready to start TLS")  # RFC 3207 4
R_AUTH_OK = reply(235, "2.7.0", "Authentication successful")
R_AUTH_FAILED = reply(535, "5.7.8", "Authentication credentials invalid")
R_AUTH_MALFORMED = reply(501, "5.5.2", "Cannot decode AUTH response")
R_AUTH_TEMPFAIL = reply(454, "4.7.0", "Temporary authentication failure")
R_AUTH_REQUIRED = reply(530, "5.7.0", "Authentication required")
R_STARTTLS_FIRST = reply(530, "5.7.0", "Must issue a STARTTLS command first")  # RFC 3207 4
# Input buffered while the session waits for the disk: past this, stop reading.
MAX_BUFFERED = 1 << 20
# Reverse DNS is a courtesy for the Received header; it must never hold a client long.
RDNS_TIMEOUT = 5.0
# A client that asked for TLS and then does not finish the handshake holds a connection
# for nothing; this bounds it as the idle timeout bounds a silent client.
TLS_HANDSHAKE_TIMEOUT = 30.0


class Session(asyncio.Protocol):
    def __init__(
        self,
        context: ServerContext,
        listener: str,
        *,
        implicit_tls: bool = False,
        submission: bool = False,
    ) -> None:
        self.ctx = context
        self.listener = listener
        self.id = context.new_session_id()
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
        # The AUTH exchange in progress: ("PLAIN",), ("LOGIN",) or ("LOGIN", username).
        self._auth: tuple[str, ...] = ()
        self.tls: str | None = None  # "TLSv1.3 TLS_AES_256_GCM_SHA384" once TLS is up
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.server_ip = ""
        self.client_port = 0
        self.client_name: str | None = None
        self.started = time.monotonic()
        self.last_activity = self.started
        self.busy = True  # until the banner is out; then while waiting on DNS or the disk
        self.message: IncomingMessage | None = None  # the message being received
        self.write_error: OSError | None = None
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
        self.trusted = False  # the client is in relay.trusted_networks
        self._counted = False  # client_limits.connect() let this connection in
        self._limit_refusal: policy.Decision | None = None
        # Refusals kept for RCPT time (policy.delay_reject): from connect, from HELO.
        self._delayed_connect: policy.Decision | None = None
        self._delayed_helo: policy.Decision | None = None
        self._listed: dict[str, str] = {}  # DNS blocklist zone -> the answer that lists us
        self._offer_auth()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but implement it.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername") or ("", 0)
        self.client_ip, self.client_port = str(peer[0]), int(peer[1])
        local = self.transport.get_extra_info("sockname") or ("",)
        self.server_ip = str(local[0])
        self.ctx.sessions.add(self)
        self.ctx.log.emit(
            Connected(
                session=self.id,
                client_ip=self.client_ip,
                client_port=self.client_port,
                listener=self.listener,
            )
        )
        if self.implicit_tls:
            # The listener finished the handshake before calling connection_made.
            self._tls_up(self.transport.get_extra_info("ssl_object"))
        self._arm_timer()
        self.trusted = self.ctx.relay.is_trusted(self.client_ip)
        if not self.trusted:
            self._limit_refusal = self.ctx.client_limits.connect(self.client_ip)
            self._counted = self._limit_refusal is None
        zones = self.ctx.access.zones if self.ctx.dnsbl_lookup is not None else ()
        if self._limit_refusal is None and (self.ctx.reverse_lookup is not None or zones):
            self._task = asyncio.ensure_future(self._greet_after_lookup(zones))
        else:
            self._greet()

    def data_received(self, data: bytes) -> None:
        # smtp.idle_timeout is the time for a complete command line (an AUTH answer too): a
        # line dripped a byte at a time does not renew it. Message data renews it with every
        # read, however small, as Postfix's smtpd_timeout does.
        if b"\n" in data or self.conn.in_message:
            self.last_activity = time.monotonic()
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
        self._abort_message()
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._counted:
            self._counted = False
            self.ctx.client_limits.disconnect(self.client_ip)
        self.ctx.sessions.discard(self)
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

    async def _greet_after_lookup(self, zones: tuple[str, ...]) -> None:
        """Reverse DNS and the DNS blocklists, all at once, before the banner."""
        await asyncio.gather(self._look_up_name(), *(self._look_up_listing(z) for z in zones))
        self._greet()

    async def _look_up_name(self) -> None:
        lookup = self.ctx.reverse_lookup
        if lookup is None:
            return
        try:
            self.client_name = await asyncio.wait_for(lookup(self.client_ip), RDNS_TIMEOUT)
        except (TimeoutError, OSError):
            self.client_name = None

    async def _look_up_listing(self, zone: str) -> None:
        lookup, name = self.ctx.dnsbl_lookup, policy.dnsbl_query(self.client_ip, zone)
        if lookup is None or name is None:
            return
        try:
            answer = await asyncio.wait_for(lookup(name), self.ctx.settings.policy.dnsbl_timeout)
        except (routing.NoSuchDomain, routing.NoRecords):
            return  # RFC 5782 2.1: no A record is "not listed"
        except (TimeoutError, OSError, routing.DnsError) as error:
            # A list that fails us lists nobody, and the log says so.
            reason = str(error) or f"no answer within {self.ctx.settings.policy.dnsbl_timeout} s"
            self.ctx.log.emit(
                DnsblUnavailable(
                    session=self.id, client_ip=self.client_ip, zone=zone, reason=reason
                )
            )
            return
        listed = policy.dnsbl_listed(answer)
        if listed is not None:
            self._listed[zone] = listed

    def _access(self, stage: str, **known: Any) -> policy.Decision | None:
        """The access rules of ``stage``; facts are gathered only when there are rules."""
        if not self.ctx.access.has_rules(stage):
            return None
        return self.ctx.access.check(stage, self._policy_facts(**known))

    def _policy_facts(self, **known: Any) -> policy.Facts:
        """What the access rules may look at, now; ``known`` adds what the caller has."""
        transaction = self.conn.transaction
        facts = dataclasses.replace(
            policy.Facts(
                client_ip=self.client_ip,
                server_ip=self.server_ip,
                helo=self.conn.helo or "",
                sender=transaction.reverse_path if transaction is not None else None,
                authenticated=self.conn.authenticated,
                trusted=self.trusted,
                listed=self._listed,
            ),
            **known,
        )
        if facts.sender and "@" in facts.sender:
            domain = facts.sender.rpartition("@")[2]
            facts = dataclasses.replace(facts, sender_local=self.ctx.router.is_local_domain(domain))
        return facts

    def _refused(self, command: str, decision: policy.Decision, **facts: str) -> None:
        self._rejected(command, decision.reply, decision.reason, rule=decision.rule, **facts)

    def _greet(self) -> None:
        if self.ctx.stopping:
            self.conn.close_with(_shutdown_reply(self.ctx.hostname))
        elif self._limit_refusal is not None:
            self._refused("CONNECT", self._limit_refusal)
            self.conn.close_with(self._limit_refusal.reply)
            self.close_reason = "per-IP limit"
        elif self.ctx.auth_limit.banned(self.client_ip):
            refusal = self._banned_reply()
            self._rejected("CONNECT", refusal, "client IP banned after failed AUTH attempts")
            self.conn.close_with(refusal)
            self.close_reason = "banned"
        elif (decision := self._access("connect")) is not None and not (
            self.ctx.settings.policy.delay_reject
        ):
            self._refused("CONNECT", decision)
            self.close_reason = "refused by policy"
            if decision.reply.code == 554:
                self.conn.send_greeting(decision.reply)  # then only QUIT (RFC 5321 3.1)
            else:
                self.conn.close_with(decision.reply)
        else:
            self._delayed_connect = decision
            self.conn.send_greeting(
                reply(220, None, f"{self.ctx.hostname} ESMTP Hato {__version__} ready")
            )
        self.busy = False
        self._process()

    # -- the one loop that answers and writes --------------------------------------------

    def _process(self) -> None:
        conn = self.conn
        try:
            while not self.busy:
                if self.ctx.stopping and not conn.in_message:
                    break  # only the message in transfer may finish; no new command is run
                event = conn.next_event()
                if event is smtp.NEED_DATA or event is smtp.PAUSED:
                    break
                if event is smtp.CLOSED:
                    break
                self._handle(event)
            if self.ctx.stopping and not self.busy and not conn.in_message and not conn.closed:
                conn.close_with(_shutdown_reply(self.ctx.hostname))
        except Exception as error:  # our bug: end this session cleanly, keep the server
            self.ctx.log.emit(InternalError(where="session", error=repr(error), session=self.id))
            self._abort_message()
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
                self._abort_message()
                self.ctx.log.emit(HeloReceived(session=self.id, helo=name, extended=extended))
                decision = self._access("helo", helo=name, sender=None)
                self._delayed_helo = None
                if decision is not None and self.ctx.settings.policy.delay_reject:
                    self._delayed_helo, decision = decision, None
                if decision is not None:
                    self._refused("EHLO" if extended else "HELO", decision, helo=name)
                    conn.send_reply(decision.reply)
                else:
                    conn.send_reply(self._hello_reply(name, extended))
            case smtp.MailFrom():
                self._mail(event)
            case smtp.RcptTo():
                self._rcpt(event)
            case smtp.DataCommand():
                decision = self._data_policy()
                if decision is not None:
                    self._refused("DATA", decision)
                    conn.send_reply(decision.reply)
                else:
                    conn.send_reply(R_DATA_GO if self._open_message() else R_WRITE_ERROR)
            case smtp.MessageEnd(problem=problem):
                self._end_message(problem)
            case smtp.Reset():
                self._abort_message()
            case smtp.CommandRejected(command=command, reply=refusal):
                if conn.transaction is None:
                    self._abort_message()
                self._rejected(command, refusal, "protocol")
            case smtp.StartTls() if self.ctx.tls is not None:
                conn.send_reply(R_TLS_GO)
                self.busy = True
                self._task = asyncio.ensure_future(self._start_tls())
            case smtp.AuthStart(mechanism=mechanism, initial_response=initial):
                self._auth_start(mechanism, initial)
            case smtp.AuthResponse(data=data):
                self._auth_response(data)
            case smtp.StartTls():
                # The engine only offers STARTTLS when configured.
                conn.send_reply(reply(502, "5.5.1", "Error: command not implemented"))

    def _hello_reply(self, name: str, extended: bool) -> Reply:
        greeting = f"{self.ctx.hostname} Hello {name} [{self.client_ip}]"
        if extended:
            return Reply(250, None, (greeting, *self.conn.ehlo_keywords()))
        return reply(250, None, greeting)

    def _rejected(
        self, command: str, refusal: Reply, reason: str, *, rule: str = "", **facts: str
    ) -> None:
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
                reply=str(refusal),
                reason=reason,
                rule=rule,
                helo=facts.get("helo", self.conn.helo or ""),
                sender=facts.get("sender", sender),
                recipient=facts.get("recipient", ""),
            )
        )

    def _mail(self, event: smtp.MailFrom) -> None:
        refusal, reason = _sender_syntax(event.reverse_path)
        # Submission wants AUTH first; whoever authenticated, on any listener, sends only as
        # an address the user owns (RFC 6409 6.1; RFC 8314 makes implicit TLS submission too).
        if refusal is None and (self.submission or self.auth_user is not None):
            refusal, reason = self._check_sender(event.reverse_path)
        if refusal is not None:
            self._rejected("MAIL", refusal, reason, sender=event.reverse_path)
            self.conn.send_reply(refusal)
            return
        decision = self._mail_policy(event.reverse_path)
        if decision is not None:
            self._refused("MAIL", decision, sender=event.reverse_path)
            self.conn.send_reply(decision.reply)
            return
        params = event.params
        self.ctx.log.emit(
            MailAccepted(
                session=self.id,
                reverse_path=event.reverse_path,
                params={
                    k: v for k in params.__slots__ if (v := getattr(params, k)) not in (None, False)
                },
            )
        )
        self.conn.send_reply(R_MAIL_OK)

    def _mail_policy(self, sender: str) -> policy.Decision | None:
        if not self.trusted:
            decision = self.ctx.client_limits.message(self.client_ip)
            if decision is not None:
                return decision
        return self._access("mail", sender=sender)

    def _rcpt_policy(self, recipient: str) -> policy.Decision | None:
        """Refusals kept from connect and HELO (delay_reject), rate limits, access rules."""
        delayed = self._delayed_connect or self._delayed_helo
        if delayed is not None:
            return delayed
        if not self.trusted:
            decision = self.ctx.client_limits.recipient(self.client_ip)
            if decision is not None:
                return decision
        return self._access("rcpt", recipients=(recipient,))

    def _data_policy(self) -> policy.Decision | None:
        transaction = self.conn.transaction
        recipients = tuple(r for r, _ in transaction.recipients) if transaction else ()
        return self._access("data", recipients=recipients)

    def _sender_owned(self, sender: str, user: str) -> bool:
        """auth.sender_login_match: may ``user`` send as ``sender``?"""
        match = self.ctx.settings.auth.sender_login_match
        if match == "any" or not sender or sender.casefold() == user.casefold():
            return True  # the null sender (bounces) carries no one's identity
        router = self.ctx.router
        if match == "domain":
            return _same_domain(sender.rpartition("@")[2], user.rpartition("@")[2])
        try:
            login, found = router.lookup(user), router.lookup(sender)
        except InvalidInput:
            return False  # a sender no mailbox could have: nobody's
        if not isinstance(login, routing.Mailbox):
            return False
        if match == "owned" and isinstance(found, routing.AliasMatch) and found.is_catch_all:
            return False  # a catch-all receives for addresses; it does not hand them out
        owner = login.address.casefold()
        return any(m.address.casefold() == owner for m in router.expand(sender).mailboxes)

    def _check_sender(self, sender: str) -> tuple[Reply | None, str]:
        """Submission (RFC 6409 4.3, 6.1): AUTH first; after AUTH: the user's own address."""
        user = self.auth_user
        if user is None:
            if not self.conn.auth_mechanisms and self.tls is None and self.conn.tls_available:
                # AUTH is offered only inside TLS: asking for it would send the client nowhere.
                return R_STARTTLS_FIRST, "submission before STARTTLS"
            return R_AUTH_REQUIRED, "submission without authentication"
        if not self._sender_owned(sender, user):
            return reply(
                553,
                "5.7.1",
                f"<{sender}>: Sender address rejected: not owned by user {user}",
            ), f"sender not owned by authenticated user {user}"
        return None, ""

    # -- AUTH (RFC 4954) -----------------------------------------------------------------

    def _offer_auth(self) -> None:
        """AUTH is offered inside TLS only, unless auth.allow_plaintext says otherwise."""
        settings = self.ctx.settings.auth
        offered = self.ctx.accounts is not None and bool(settings.mechanisms)
        may = offered and (self.implicit_tls or self.tls is not None or settings.allow_plaintext)
        self.conn.auth_mechanisms = settings.mechanisms if may else ()
        self.conn.auth_needs_tls = offered and not may and self.conn.tls_available

    def _banned_reply(self) -> Reply:
        return reply(421, "4.7.0", f"{self.ctx.hostname} Error: too many failed authentications")

    def _end_banned(self, stage: str) -> None:
        """A ban holds in every session of the IP, those opened before it included."""
        refusal = self._banned_reply()
        self._rejected(stage, refusal, "client IP banned after failed AUTH attempts")
        self.conn.close_with(refusal)
        self.close_reason = "banned"

    def _auth_start(self, mechanism: str, initial: str | None) -> None:
        if self.ctx.auth_limit.banned(self.client_ip):
            self._end_banned("AUTH")
            return
        self._auth = (mechanism,)
        if initial is None:
            challenge = "" if mechanism == "PLAIN" else LOGIN_USERNAME
            self.conn.send_reply(Reply(334, None, (challenge,)))
        else:
            self._auth_response(initial)

    def _auth_response(self, data: str) -> None:
        state, self._auth = self._auth, ()
        try:
            if state == ("PLAIN",):
                authzid, user, password = decode_plain(data)
                if authzid and authzid != user:
                    # We let nobody act as someone else: a failure like a wrong password.
                    self._verify("PLAIN", user, None)
                else:
                    self._verify("PLAIN", user, password)
            elif state == ("LOGIN",):
                self._auth = ("LOGIN", decode_login(data))
                self.conn.send_reply(Reply(334, None, (LOGIN_PASSWORD,)))
            elif len(state) == 2:
                self._verify("LOGIN", state[1], decode_login(data))
            else:
                raise SaslError("no AUTH exchange in progress")
        except SaslError as error:
            self._rejected("AUTH", R_AUTH_MALFORMED, f"malformed AUTH response: {error}")
            self.conn.send_reply(R_AUTH_MALFORMED)

    def _verify(self, mechanism: str, user: str, password: str | None) -> None:
        self.busy = True
        self._task = asyncio.ensure_future(self._check_password(mechanism, user, password))

    async def _check_password(self, mechanism: str, user: str, password: str | None) -> None:
        answer = await self._password_answer(mechanism, user, password)
        if self.transport is None or self.transport.is_closing():
            return
        if answer.code == 421:
            self.conn.close_with(answer)
            self.close_reason = "too many failed authentications"
        else:
            self.conn.send_reply(answer)
        self.busy = False
        self._process()

    async def _password_answer(self, mechanism: str, user: str, password: str | None) -> Reply:
        accounts, limiter, ip = self.ctx.accounts, self.ctx.auth_limit, self.client_ip
        assert accounts is not None
        banned = limiter.banned(ip)
        try:
            ok = (
                not banned
                and password is not None
                and await asyncio.to_thread(accounts.verify_password, user, password)
            )
        except AccountError as error:
            self.ctx.log.emit(InternalError(where="auth", error=str(error), session=self.id))
            self._rejected("AUTH", R_AUTH_TEMPFAIL, f"authentication error for user {user!r}")
            return R_AUTH_TEMPFAIL
        if banned or limiter.banned(ip):
            # Banned before or while the password was checked: right or wrong, no entry.
            answer = self._banned_reply()
            self._rejected("AUTH", answer, "client IP banned after failed AUTH attempts")
            return answer
        if ok:
            # The address as the store reads it: without the spaces, brackets or final dot
            # the password check forgave, which would otherwise reach replies and logs.
            self.auth_user = user = parse_address(user).text
            self.ctx.log.emit(
                AuthSucceeded(session=self.id, client_ip=ip, user=user, mechanism=mechanism)
            )
            return R_AUTH_OK
        over = limiter.failed(ip)
        await asyncio.sleep(self.ctx.settings.auth.failure_delay)
        answer = self._banned_reply() if over else R_AUTH_FAILED
        reason = f"authentication failed for user {user!r} ({mechanism})"
        self._rejected("AUTH", answer, reason + (", IP banned" if over else ""))
        return answer

    def _rcpt(self, event: smtp.RcptTo) -> None:
        address = event.forward_path
        decision = self._rcpt_policy(address)
        if decision is not None:
            self._refused("RCPT", decision, recipient=address)
            self.conn.send_reply(decision.reply)
            return
        refusal, reason = self._check_recipient(address)
        if refusal is not None:
            self._rejected("RCPT", refusal, reason, recipient=address)
            self.conn.send_reply(refusal)
            return
        params = event.params
        self.ctx.log.emit(
            RcptAccepted(
                session=self.id,
                recipient=address,
                params={"notify": list(params.notify), "orcpt": params.orcpt},
            )
        )
        self.conn.send_reply(R_RCPT_OK)

    def _check_recipient(self, address: str) -> tuple[Reply | None, str]:
        """Refuse at RCPT what would only bounce later: unknown users, relaying, full boxes."""
        try:
            lookup = self.ctx.router.lookup(address)
        except InvalidInput as error:
            # The grammar allows it (u@1.2, an xn-- label that is not Punycode), routing not.
            answer = reply(501, "5.1.3", f"Bad recipient address syntax ({_brief(error)})")
            return answer, str(error)
        decision = self.ctx.relay.check(
            address,
            local=not isinstance(lookup, routing.NotLocal),
            client_ip=self.client_ip,
            authenticated=self.conn.authenticated,
        )
        if decision is not None:
            return decision.reply, decision.reason
        match lookup:
            case routing.Unknown():
                return reply(
                    550,
                    "5.1.1",
                    f"<{address}>: Recipient address rejected: User unknown in local recipient"
                    " table",
                ), "unknown user"
            case routing.Mailbox(domain=domain, local_part=local, quota=quota) if quota:
                if self.ctx.maildir.usage(domain, local, quota).bytes >= quota:
                    if self.ctx.settings.accounts.quota_exceeded == "permanent":
                        answer = reply(552, "5.2.2", f"<{address}>: Mailbox full")
                    else:
                        answer = reply(452, "4.2.2", f"<{address}>: Mailbox full, try later")
                    return answer, f"mailbox over quota of {quota} bytes"
        return None, ""

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
        self._abort_message()
        origin = Origin.SUBMISSION if self.submission else Origin.SMTP
        try:
            self.message = self.ctx.intake.open(self._envelope(transaction), origin)
        except (OSError, SpoolError) as error:
            self.ctx.log.emit(InternalError(where="spool", error=repr(error), session=self.id))
            return False
        self.write_error = None
        return True

    def _write(self, data: bytes) -> None:
        # The first BDAT chunk opens the message (DATA opened it at 354).
        if self.message is None and (self.write_error is not None or not self._open_message()):
            self.write_error = self.write_error or OSError("cannot open queue file")
            return
        assert self.message is not None
        try:
            self.message.write(data)
        except (OSError, SpoolError) as error:
            self.ctx.log.emit(InternalError(where="spool", error=repr(error), session=self.id))
            self.write_error = OSError(str(error))
            self._abort_message()

    def _abort_message(self) -> None:
        message, self.message = self.message, None
        if message is not None:
            try:
                message.abort()
            except (OSError, SpoolError) as error:
                self.ctx.log.emit(InternalError(where="spool", error=repr(error), session=self.id))

    def _end_message(self, problem: Reply | None) -> None:
        transaction = self.conn.transaction
        if problem is None and transaction is not None and transaction.chunked:
            # BDAT has no moment before the data: its data rules answer the LAST chunk.
            decision = self._data_policy()
            if decision is not None:
                self._refused("BDAT", decision)
                self._abort_message()
                self.write_error = None
                self.conn.send_reply(decision.reply)
                return
        if problem is None and self.message is None and self.write_error is None:
            self._write(b"")  # BDAT 0 LAST as the only chunk: an empty message
        if problem is not None or self.write_error is not None or self.message is None:
            self._abort_message()
            self.write_error = None
            refusal = problem or R_WRITE_ERROR
            self._rejected("DATA", refusal, "message refused" if problem else "spool error")
            self.conn.send_reply(refusal)
            return
        message, self.message = self.message, None
        assert transaction is not None
        self.busy = True
        self._task = asyncio.ensure_future(self._finish(message, len(transaction.recipients)))

    def _envelope(self, transaction: smtp.Transaction) -> Envelope:
        params = transaction.params
        facts = self._facts()
        return Envelope(
            reverse_path=transaction.reverse_path,
            recipients=tuple(
                Recipient(address=path, notify=rp.notify, orcpt=rp.orcpt)
                for path, rp in transaction.recipients
            ),
            envid=params.envid,
            ret=params.ret,
            body=params.body,
            smtputf8=params.smtputf8,
            client_ip=self.client_ip,
            client_name=self.client_name,
            helo=self.conn.helo or "",
            protocol=protocol_name(facts, smtputf8=params.smtputf8),
            tls=self.tls,
            auth=self.auth_user,
            arrival=time.time(),
            session_id=self.id,
        )

    async def _finish(self, message: IncomingMessage, recipients: int) -> None:
        # The intake keeps a message it has started to store even if the client leaves.
        outcome = await message.finish()
        if isinstance(outcome, Accepted):
            self.messages += 1
            self.recipients += recipients
            answer = reply(250, "2.0.0", f"Ok: queued as {outcome.queue_id}")
        else:
            answer = outcome.reply
            self._rejected("DATA", answer, outcome.reason)
        if self.transport is None or self.transport.is_closing():
            return  # the client left; an accepted message is queued all the same
        self.conn.send_reply(answer)
        self.busy = False
        self._process()

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
        self.busy = False
        self._process()

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
        if self.busy and self.message is None and self._task is not None:
            # Waiting on our own disk or DNS is not the client's idleness.
            self.last_activity = time.monotonic()
        elif idle >= self.ctx.settings.smtp.idle_timeout:
            self._abort_message()
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
        if force and self._task is not None and not self._task.done() and self.message is None:
            return  # a commit is in flight: its 250 is owed; it closes after
        self._abort_message()
        self.conn.close_with(_shutdown_reply(self.ctx.hostname))
        self.close_reason = "server shutdown"
        self._flush()


def _shutdown_reply(hostname: str) -> Reply:
    return reply(421, "4.3.2", f"{hostname} Service shutting down, closing transmission channel")


def _sender_syntax(sender: str) -> tuple[Reply | None, str]:
    """A sender the grammar allows but no report could be returned to (u@1.2): 501."""
    try:
        if sender:
            parse_address(sender, allow_literal=True)
    except InvalidInput as error:
        return reply(501, "5.1.7", f"Bad sender address syntax ({_brief(error)})"), str(error)
    return None, ""


def _brief(error: Exception) -> str:
    # A reply line holds 512 octets (RFC 5321 4.5.3.1.5); the event log keeps all of it.
    text = str(error)
    return text if len(text) <= 200 else text[:197] + "..."


def _same_domain(a: str, b: str) -> bool:
    try:
        return smtp.domain_a_label(a) == smtp.domain_a_label(b)
    except smtp.AddressError:
        return False
