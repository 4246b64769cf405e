"""An SMTP client over asyncio: the sockets, TLS and timers around ``smtp.ClientConnection``.

What it promises:

- Every failure is classified where it happens (:class:`SmtpError`): refused, reset or
  timed-out connections, protocol errors and 4xx replies are transient; 5xx replies are
  permanent. Replies to MAIL, RCPT and the message are not errors: ``send`` returns them
  per recipient, and the connection can carry another message afterwards.
- STARTTLS follows a policy: ``none``, ``may`` (opportunistic, any certificate),
  ``encrypt`` (required, any certificate), ``verify`` (required, certificate and name
  verified). Nothing the server sent before the handshake is read after it.
- MAIL, every RCPT and DATA go out in one write when the server offers PIPELINING.
- Message data streams: a file is read 64 KiB at a time, never whole.
- Every line either way is kept with its time since the connection began (``transcript``);
  credentials never appear in it.
- ``lmtp=True`` speaks LMTP (RFC 2033) over the same code, to a TCP port or a unix socket
  (``unix_path``): LHLO, and ``SendResult.per_recipient`` holds the reply after the data of
  each accepted recipient. A connection lost among those replies is no error: the replies
  read so far are kept and ``interrupted`` says what happened, so only the recipients left
  without a reply need another attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, cast

from ..smtp import ClientConnection, Command, ProtocolError, Reply, Response
from ..spool import MessageSource
from ._classify import LocalFailure

__all__ = [
    "MESSAGE_CHUNK",
    "MessageContent",
    "RecipientReply",
    "SendResult",
    "SmtpClient",
    "SmtpError",
    "TimedLine",
    "Timeouts",
    "TlsPolicy",
    "message_chunks",
]

TlsPolicy = Literal["none", "may", "encrypt", "verify"]
_TLS_POLICIES = ("none", "may", "encrypt", "verify")
MessageContent = bytes | Path | MessageSource | AsyncIterable[bytes]
RecipientSpec = str | tuple[str, Sequence[str], str | None]

# Message files are read this much at a time: memory stays flat whatever the size.
MESSAGE_CHUNK = 64 * 1024
# Closing waits this long for the peer (TLS close_notify, unsent data), then aborts.
CLOSE_TIMEOUT = 5.0
# RFC 3463 codes for failures that carry no reply from the server.
NO_ANSWER = "4.4.1"  # X.4.1 No answer from host: the connection could not be made
BAD_CONNECTION = "4.4.2"  # X.4.2 Bad connection: lost, reset or timed out mid-session
PROTOCOL_ERROR = "4.5.0"  # X.5.0 Other protocol status: the server did not speak SMTP
UNSUPPORTED = "4.7.4"  # X.7.4 Security features not supported (STARTTLS, AUTH)
TLS_FAILED = "4.7.5"  # X.7.5 Cryptographic failure (handshake, certificate)
LOCAL_ERROR = "4.3.0"  # X.3.0 Other mail system status: the message file could not be read


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds to wait for each reply: RFC 5321 4.5.3.2's minimums by default."""

    greeting: float = 300.0  # 4.5.3.2.1 initial 220 message: 5 minutes
    mail: float = 300.0  # 4.5.3.2.2 MAIL command: 5 minutes
    rcpt: float = 300.0  # 4.5.3.2.3 RCPT command: 5 minutes
    data_init: float = 120.0  # 4.5.3.2.4 DATA initiation: 2 minutes
    data_block: float = 180.0  # 4.5.3.2.5 each write of message data: 3 minutes
    data_end: float = 600.0  # 4.5.3.2.6 DATA termination (the final dot): 10 minutes
    command: float = 300.0  # EHLO, STARTTLS, AUTH, RSET, QUIT: unnamed there, as MAIL


class SmtpError(Exception):
    """A failure to talk to the next hop, classified where it happened.

    ``reply`` is the server's reply when there was one; ``transient`` says whether trying
    again later may work; ``enhanced`` is an RFC 3463 code for reports and logs;
    ``failure`` says what failed on our side when no reply (or not only the reply) tells:
    the connection, TLS, the protocol, our own disk.
    """

    def __init__(
        self,
        message: str,
        *,
        reply: Reply | None = None,
        transient: bool | None = None,
        enhanced: str | None = None,
        failure: LocalFailure | None = None,
    ) -> None:
        super().__init__(message)
        self.reply = reply
        self.failure = failure
        self.transient = transient if transient is not None else reply is None or reply.code < 500
        klass = "4" if self.transient else "5"
        if enhanced is None and reply is not None and (reply.enhanced or "")[:1] == klass:
            enhanced = reply.enhanced
        self.enhanced = enhanced or f"{klass}.0.0"
        # What was said before the failure, when a session had begun (set by connect).
        self.transcript: list[TimedLine] = []
        self.started_at = 0.0


@dataclass(frozen=True, slots=True)
class RecipientReply:
    address: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class SendResult:
    """The replies to one transaction.

    ``data`` is the reply to the message (or the refusal of DATA itself); None when MAIL
    failed or no recipient was accepted. ``local_refusal`` is set, and nothing was sent,
    when the next hop cannot take the message at all (SIZE, SMTPUTF8, 8BITMIME).
    """

    mail: Reply | None
    recipients: tuple[RecipientReply, ...]
    data: Reply | None
    local_refusal: Reply | None = None
    # LMTP only: the reply after the data of each accepted recipient, in RCPT order, and
    # why the rest (if any) got none.
    per_recipient: tuple[RecipientReply, ...] = ()
    interrupted: str | None = None


class TimedLine(NamedTuple):
    seconds: float  # since the connection attempt began
    direction: str  # "C" or "S"
    text: str


class _Wire(asyncio.Protocol):
    """Feeds the engine as bytes arrive and wakes whoever waits for a reply or a drain."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.error: Exception | None = None
        self.readable = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.readable.set()

    def eof_received(self) -> bool | None:
        self.lost = True
        self.readable.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost, self.error = True, exc
        for event in (self.readable, self.writable, self.closed):
            event.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


async def message_chunks(source: MessageContent) -> AsyncIterator[bytes]:
    """The message in pieces: bytes and files in chunks of MESSAGE_CHUNK, iterables as given."""
    if isinstance(source, bytes):
        for start in range(0, len(source), MESSAGE_CHUNK):
            yield source[start : start + MESSAGE_CHUNK]
    elif isinstance(source, os.PathLike | MessageSource):
        # Disk reads go to a thread so a slow disk never stalls other connections.
        stored = source if isinstance(source, MessageSource) else MessageSource(path=Path(source))
        handle = await asyncio.to_thread(stored.open)
        try:
            while chunk := await asyncio.to_thread(handle.read, MESSAGE_CHUNK):
                yield chunk
        finally:
            handle.close()
    else:
        async for chunk in source:
            yield chunk


def _unverified_context() -> ssl.SSLContext:
    # RFC 7435 opportunistic security: encrypt against passive listeners, trust nobody.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SmtpClient:
    """One connection to a next hop; make it with :meth:`connect`."""

    def __init__(
        self, host: str, port: int, wire: _Wire, *, local_hostname: str, timeouts: Timeouts
    ) -> None:
        self.host, self.port = host, port
        self.local_hostname = local_hostname
        self.timeouts = timeouts
        self.connection = wire.conn
        self.banner: Reply | None = None
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None
        self.tls_verified = False
        self.peer_certificate: bytes | None = None  # DER, as the server sent it
        self.transcript: list[TimedLine] = []
        self.started_at = time.time()  # the transcript's times count from here
        self._wire = wire
        self._started = time.monotonic()

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        local_hostname: str,
        timeout: float = 30.0,
        tls: TlsPolicy | str = "may",
        tls_server_name: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeouts: Timeouts | None = None,
        lmtp: bool = False,
        unix_path: str | None = None,
    ) -> SmtpClient:
        """Connect, read the banner, EHLO (or HELO), STARTTLS as ``tls`` asks, EHLO again.

        ``timeout`` bounds the connection and the TLS handshake each. With ``lmtp`` the
        greeting is LHLO; with ``unix_path`` the connection is to that unix socket (``host``
        and ``port`` then only name it in messages).
        """
        if tls not in _TLS_POLICIES:
            raise ValueError(f"unknown TLS policy {tls!r}: one of {', '.join(_TLS_POLICIES)}")
        wire = _Wire(ClientConnection(lmtp=lmtp))
        client = cls(
            host, port, wire, local_hostname=local_hostname, timeouts=timeouts or Timeouts()
        )
        where = f"unix:{unix_path}" if unix_path is not None else f"{host}[{port}]"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                if unix_path is not None:
                    await loop.create_unix_connection(lambda: wire, unix_path)
                else:
                    await loop.create_connection(lambda: wire, host, port)
        except TimeoutError:
            raise SmtpError(
                f"connect to {where}: timed out", enhanced=NO_ANSWER, failure=LocalFailure.CONNECT
            ) from None
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise SmtpError(
                f"connect to {where}: {reason}", enhanced=NO_ANSWER, failure=LocalFailure.CONNECT
            ) from None
        try:
            await client._open(tls, tls_server_name or host, ssl_context, timeout)
        except SmtpError as error:
            client._abort()
            error.transcript, error.started_at = client.transcript, client.started_at
            raise
        except BaseException:
            client._abort()
            raise
        return client

    async def __aenter__(self) -> SmtpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.quit()

    @property
    def extensions(self) -> dict[str, str]:
        return self.connection.extensions

    @property
    def pipelining(self) -> bool:
        return self.connection.pipelining

    @property
    def dsn(self) -> bool:
        return self.connection.dsn

    # -- the session -------------------------------------------------------------------

    async def _open(
        self, tls: str, server_name: str, context: ssl.SSLContext | None, timeout: float
    ) -> None:
        banner = await self._reply(self.timeouts.greeting)
        self.banner = banner.reply
        if banner.reply.code != 220:
            await self._quit_quietly()
            raise SmtpError(f"{self.host} refused the session: {banner.reply}", reply=banner.reply)
        await self._hello()
        conn = self.connection
        if tls == "none" or (tls == "may" and not conn.starttls_offered):
            return
        if not conn.starttls_offered:
            await self._quit_quietly()
            raise SmtpError(
                f"TLS required but not offered by {self.host}",
                enhanced=UNSUPPORTED,
                failure=LocalFailure.TLS,
            )
        ready = await self._command(conn.starttls(), self.timeouts.command)
        if ready.reply.code != 220:
            if tls == "may":
                return  # opportunistic: plaintext it is
            await self._quit_quietly()
            raise SmtpError(
                f"TLS required but STARTTLS failed: {ready.reply}",
                reply=ready.reply,
                transient=True,
                enhanced=UNSUPPORTED,
                failure=LocalFailure.TLS,
            )
        if context is None:
            context = ssl.create_default_context() if tls == "verify" else _unverified_context()
        await self._handshake(context, server_name, timeout)
        await self._hello()

    async def _hello(self) -> None:
        conn = self.connection
        if conn.lmtp:
            answer = await self._command(conn.lhlo(self.local_hostname), self.timeouts.command)
        else:
            answer = await self._command(conn.ehlo(self.local_hostname), self.timeouts.command)
        if answer.reply.is_permanent and not conn.lmtp:
            # RFC 5321 3.2: a server that does not know EHLO answers with an error; try HELO.
            answer = await self._command(conn.helo(self.local_hostname), self.timeouts.command)
        if not answer.reply.is_positive:
            await self._quit_quietly()
            raise SmtpError(
                f"{self.host} refused {answer.command.value}: {answer.reply}", reply=answer.reply
            )

    async def _handshake(self, context: ssl.SSLContext, server_name: str, timeout: float) -> None:
        wire = self._wire
        assert wire.transport is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    wire.transport, wire, context, server_hostname=server_name
                )
        except (OSError, ssl.SSLError, TimeoutError) as error:
            self._abort()
            reason = "timed out" if isinstance(error, TimeoutError) else str(error)
            raise SmtpError(
                f"TLS handshake with {self.host} failed: {reason}",
                enhanced=TLS_FAILED,
                failure=LocalFailure.TLS,
            ) from None
        if transport is None:
            self._abort()
            raise SmtpError(
                f"TLS with {self.host} could not start",
                enhanced=TLS_FAILED,
                failure=LocalFailure.TLS,
            )
        wire.transport = transport
        tls_object = transport.get_extra_info("ssl_object")
        self.connection.tls_established()
        if isinstance(tls_object, ssl.SSLObject):
            self.tls_version = tls_object.version()
            cipher = tls_object.cipher()
            self.tls_cipher = cipher[0] if cipher else None
            self.peer_certificate = tls_object.getpeercert(binary_form=True)
        self.tls_verified = context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname

    async def login(self, user: str, password: str) -> Reply:
        """AUTH PLAIN (RFC 4954, 4616); only when the server offers it."""
        conn = self.connection
        if "PLAIN" not in conn.auth_mechanisms:
            raise SmtpError(
                f"{self.host} does not offer AUTH PLAIN (offers: {conn.auth_mechanisms})",
                enhanced=UNSUPPORTED,
            )
        answer = await self._command(conn.auth_plain(user, password), self.timeouts.command)
        if answer.reply.code == 334:
            # It asks for more than PLAIN ever says: cancel, and report the challenge.
            await self._command(conn.auth_continue(), self.timeouts.command)
        if answer.reply.code != 235:
            raise SmtpError(f"{self.host} refused AUTH: {answer.reply}", reply=answer.reply)
        return answer.reply

    async def send(
        self,
        *,
        reverse_path: str,
        recipients: Sequence[RecipientSpec],
        message: MessageContent,
        size: int | None = None,
        body: str | None = None,
        smtputf8: bool = False,
        ret: str | None = None,
        envid: str | None = None,
    ) -> SendResult:
        """One transaction: MAIL, RCPTs, DATA and the message; the replies per recipient.

        Pipelined when the server offers PIPELINING, else lock-step. Afterwards the
        connection is ready for another message (an RSET cleans up a failed one).
        """
        if not recipients:
            raise ValueError("a transaction needs at least one recipient")
        conn = self.connection
        eight_bit = (body or "").upper() == "8BITMIME"
        refusal = conn.check_transaction(size, needs_smtputf8=smtputf8, eight_bit=eight_bit)
        if refusal is not None:
            return SendResult(None, (), None, local_refusal=refusal)
        if not self._usable() or not conn.can_send(Command.MAIL):
            raise SmtpError(
                f"the connection to {self.host} is no longer usable",
                enhanced=BAD_CONNECTION,
                failure=LocalFailure.LOST,
            )
        specs = [(r, (), None) if isinstance(r, str) else r for r in recipients]
        try:
            mail_line = conn.mail(
                reverse_path, size=size, body=body, smtputf8=smtputf8, ret=ret, envid=envid
            )
            if conn.pipelining:
                group = [mail_line, *(conn.rcpt(a, notify=n, orcpt=o) for a, n, o in specs)]
                mail, replies, data = await self._pipelined([*group, conn.data()], len(specs))
            else:
                mail, replies, data = await self._lock_step(mail_line, specs)
            return await self._finish(mail, replies, data, message)
        except BaseException:
            # Whatever failed half-way (a reply, the disk, a cancellation), the session's
            # state is unknown now: it carries nothing more.
            self._abort()
            raise

    async def _finish(
        self,
        mail: Reply,
        replies: tuple[RecipientReply, ...],
        data: Reply | None,
        message: MessageContent,
    ) -> SendResult:
        conn = self.connection
        accepted = mail.is_positive and any(r.reply.is_positive for r in replies)
        if data is not None and data.code == 354:
            if not accepted:
                # RFC 2920 3.1: DATA accepted without recipients gets an empty message.
                await self._write(conn.end_of_data(), self.timeouts.data_block)
                await self._reply(self.timeouts.data_end)
                return SendResult(mail, replies, None)
            try:
                async for chunk in message_chunks(message):
                    await self._write(conn.message_chunk(chunk), self.timeouts.data_block)
            except OSError as error:
                # Our own disk, not the next hop: transient, and the session is abandoned.
                raise SmtpError(
                    f"reading the message: {error}",
                    enhanced=LOCAL_ERROR,
                    failure=LocalFailure.LOCAL,
                ) from error
            await self._write(conn.end_of_data(), self.timeouts.data_block)
            if conn.lmtp:
                return await self._lmtp_replies(mail, replies)
            final = await self._reply(self.timeouts.data_end)
            return SendResult(mail, replies, final.reply)
        if conn.in_transaction:
            await self._rset()
        return SendResult(mail, replies, data if accepted else None)

    async def _lmtp_replies(self, mail: Reply, replies: tuple[RecipientReply, ...]) -> SendResult:
        """RFC 2033 4.2: a reply per accepted recipient; those read before a loss count."""
        owed = sum(1 for r in replies if r.reply.is_positive)
        final: list[RecipientReply] = []
        try:
            while len(final) < owed:
                response = await self._reply(self.timeouts.data_end)
                final.append(RecipientReply(response.argument, response.reply))
        except SmtpError as error:
            self._abort()
            last = final[-1].reply if final else None
            return SendResult(
                mail, replies, last, per_recipient=tuple(final), interrupted=str(error)
            )
        return SendResult(mail, replies, final[-1].reply, per_recipient=tuple(final))

    async def _pipelined(
        self, group: list[bytes], recipients: int
    ) -> tuple[Reply, tuple[RecipientReply, ...], Reply | None]:
        # RFC 2920: the whole group in one write, the replies read in order.
        await self._write(b"".join(group), self.timeouts.mail)
        mail = (await self._reply(self.timeouts.mail)).reply
        replies = []
        for _ in range(recipients):
            response = await self._reply(self.timeouts.rcpt)
            replies.append(RecipientReply(response.argument, response.reply))
        data = (await self._reply(self.timeouts.data_init)).reply
        return mail, tuple(replies), data

    async def _lock_step(
        self, mail_line: bytes, specs: list[tuple[str, Sequence[str], str | None]]
    ) -> tuple[Reply, tuple[RecipientReply, ...], Reply | None]:
        conn, timeouts = self.connection, self.timeouts
        await self._write(mail_line, timeouts.mail)
        mail = (await self._reply(timeouts.mail)).reply
        if not mail.is_positive:
            return mail, (), None
        replies = []
        for address, notify, orcpt in specs:
            rcpt = await self._command(
                conn.rcpt(address, notify=notify, orcpt=orcpt), timeouts.rcpt
            )
            replies.append(RecipientReply(address, rcpt.reply))
        if not any(r.reply.is_positive for r in replies):
            return mail, tuple(replies), None
        data = await self._command(conn.data(), timeouts.data_init)
        return mail, tuple(replies), data.reply

    async def _rset(self) -> None:
        """Drop a failed transaction; a connection that cannot even RSET is closed."""
        try:
            answer = await self._command(self.connection.rset(), self.timeouts.command)
        except SmtpError:
            return
        if not answer.reply.is_positive:
            self._abort()

    async def quit(self) -> None:
        """QUIT politely when the session allows it, then close."""
        await self._quit_quietly()
        await self.close()

    async def close(self) -> None:
        """Close the connection without QUIT (after an error, or when QUIT was sent)."""
        transport = self._wire.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        if transport is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._wire.closed.wait()
            except TimeoutError:
                transport.abort()

    # -- reading and writing -------------------------------------------------------------

    async def _quit_quietly(self) -> None:
        if not self._usable() or not self.connection.can_send(Command.QUIT):
            return
        with contextlib.suppress(SmtpError):
            await self._command(self.connection.quit(), self.timeouts.command)

    async def _command(self, line: bytes, timeout: float) -> Response:
        await self._write(line, timeout)
        return await self._reply(timeout)

    async def _write(self, data: bytes, timeout: float) -> None:
        wire = self._wire
        if not self._usable() or wire.transport is None:
            raise self._lost("while sending")
        wire.transport.write(data)
        self._stamp()
        try:
            async with asyncio.timeout(timeout):
                await wire.writable.wait()
        except TimeoutError:
            self._abort()
            raise SmtpError(
                f"{self.host} did not take our data within {timeout:g} s",
                enhanced=BAD_CONNECTION,
                failure=LocalFailure.LOST,
            ) from None
        if wire.lost:
            raise self._lost("while sending")

    async def _reply(self, timeout: float) -> Response:
        """The next reply; a 421 (the server is closing) is raised as an error."""
        wire, conn = self._wire, self.connection
        awaited = conn.awaiting[0].value if conn.awaiting else "?"
        try:
            async with asyncio.timeout(timeout):
                while (response := conn.next_reply()) is None:
                    if wire.lost:
                        raise self._lost(f"waiting for the reply to {awaited}")
                    wire.readable.clear()
                    await wire.readable.wait()
        except TimeoutError:
            self._abort()
            raise SmtpError(
                f"no reply from {self.host} to {awaited} within {timeout:g} s",
                enhanced=BAD_CONNECTION,
                failure=LocalFailure.LOST,
            ) from None
        except ProtocolError as error:
            self._stamp()
            self._abort()
            raise SmtpError(
                f"{self.host} broke the protocol after {awaited}: {error}",
                enhanced=PROTOCOL_ERROR,
                failure=LocalFailure.PROTOCOL,
            ) from None
        self._stamp()
        if response.reply.code == 421 and response.command is not Command.QUIT:
            # RFC 5321 3.8: the server is closing the channel; nothing more will be answered.
            self._abort()
            raise SmtpError(
                f"{self.host} closed the session: {response.reply}", reply=response.reply
            )
        return response

    def _lost(self, doing: str) -> SmtpError:
        error = self._wire.error
        reason = f": {error}" if error is not None else ""
        self._abort()
        return SmtpError(
            f"connection to {self.host} lost {doing}{reason}",
            enhanced=BAD_CONNECTION,
            failure=LocalFailure.LOST,
        )

    def _stamp(self) -> None:
        lines = self.connection.transcript
        now = round(time.monotonic() - self._started, 6)
        for line in lines[len(self.transcript) :]:
            self.transcript.append(TimedLine(now, line.direction, line.text))

    @property
    def usable(self) -> bool:
        """Still connected, with no transaction open: it can carry another message."""
        return self._usable() and not self.connection.in_transaction

    def _usable(self) -> bool:
        transport = self._wire.transport
        return not self._wire.lost and transport is not None and not transport.is_closing()

    def _abort(self) -> None:
        transport = self._wire.transport
        if transport is not None and not transport.is_closing():
            transport.abort()
