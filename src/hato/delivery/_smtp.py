"""Remote delivery over SMTP: one transaction per message and destination domain.

Promises:
- Each target gets a result classified where it happened: the next hop's 2xx is
  DELIVERED, 4xx DEFERRED, 5xx FAILED, per recipient (a refused RCPT fails only that
  recipient); the reply text goes with it, for the event log and the report.
- Hosts are tried in the route's order (MX preference, then the next address of the same
  host): a connection that cannot be made, a greeting that is not 220, a TLS failure or a
  transient failure before any recipient was accepted moves on to the next; when every host
  failed, the targets are DEFERRED with the last reason (RFC 5321 5.1).
- A routing failure is classified by the router: NXDOMAIN and null MX fail at once, a DNS
  timeout defers.
- Local refusals come before any byte is sent: a message over the next hop's SIZE
  (5.3.4), one needing SMTPUTF8 where it is not offered (5.6.7).
- A session that carried a message stays open for ``session_reuse`` seconds, and the next
  message for the same host, port and TLS policy goes over it (RFC 5321 3.3 allows many
  transactions per session), saving the connection, greeting, EHLO and TLS handshake. A
  kept session that turns out dead is replaced by a fresh one once, without counting as
  the host's failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hato.delivery._classify import LocalFailure, Reason, classify_local, classify_reply
from hato.delivery._remote_types import RemoteJob, RemoteResult, RemoteTarget
from hato.delivery._result import Result, Status
from hato.delivery._smtp_client import SmtpClient, SmtpError, TimedLine, Timeouts
from hato.routing import DnsError, Hop, Hops, NextHopRouter, RouteError
from hato.smtp import Reply
from hato.trace import Attempt

__all__ = ["SmtpAgent"]


# How long an idle session is kept for the next message to the same host (by default; the
# setting is relay.session_reuse), and how many at most per host.
REUSE_IDLE = 5.0
REUSE_PER_HOST = 4
# How reports name what a reply answered when it was no command line of ours.
END_OF_DATA = "<end of message data>"
GREETING = "<connection opened>"

_PoolKey = tuple[str, int, str, str, bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Failure:
    result: Result
    remote_mta: str | None = None
    diagnostic: str | None = None
    command: str | None = None  # the command line the diagnostic answered
    # A host that answered every recipient with 4xx before accepting any: its replies,
    # which the targets keep if no later host takes the message.
    results: list[RemoteResult] | None = None


class SmtpAgent:
    def __init__(
        self,
        router: NextHopRouter,
        *,
        local_hostname: str,
        connect_timeout: float = 30.0,
        timeouts: Timeouts | None = None,
        smarthost_auth: tuple[str, str] | None = None,
        session_reuse: float = REUSE_IDLE,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        self.router = router
        self.local_hostname = local_hostname
        self.connect_timeout = connect_timeout
        self.timeouts = timeouts or Timeouts()
        self.smarthost_auth = smarthost_auth
        self.session_reuse = session_reuse
        # The flight recorder's intake: called after each host was tried, with what was said.
        self.on_attempt = on_attempt
        self._idle: dict[_PoolKey, list[tuple[float, SmtpClient]]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """QUIT every kept session (at shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, {}
        await asyncio.gather(
            *(client.quit() for sessions in idle.values() for _, client in sessions),
            return_exceptions=True,
        )

    async def deliver(self, job: RemoteJob) -> list[RemoteResult]:
        try:
            route = await self.router.route(job.domain)
        except RouteError as error:
            result = _classified(error)
            return _all(job.targets, _Failure(result=result))
        if not isinstance(route, Hops) or not route.hosts:
            detail = f"no next hop for {job.domain}: check the transports"
            result = Result.deferred("4.3.5", detail)
            return _all(job.targets, _Failure(result=result))
        nobody = f"no host of {job.domain} answered"
        last = _Failure(result=Result.deferred("4.4.1", nobody, Reason.CONNECTION))
        for hop in route.hosts:
            for address in hop.addresses or [hop.host]:
                outcome = await self._try(job, hop, address, smarthost=route.via == "smarthost")
                if isinstance(outcome, list):
                    return outcome
                last = outcome
        return last.results if last.results is not None else _all(job.targets, last)

    async def _try(
        self, job: RemoteJob, hop: Hop, address: str, *, smarthost: bool
    ) -> list[RemoteResult] | _Failure:
        """Deliver through one host; a _Failure means: try the next one."""
        auth = smarthost and self.smarthost_auth is not None
        key: _PoolKey = (address, hop.port, str(hop.tls_policy), hop.server_name, auth)
        kept = self._take(key)
        if kept is not None:
            mark = len(kept.transcript)
            try:
                outcome = await self._send(job, kept, hop)
            except SmtpError as error:
                self._record(job, hop, address, kept, mark, f"kept session failed: {error}")
                await kept.close()  # went stale while kept: a fresh session decides
            else:
                self._record(job, hop, address, kept, mark, _summary(outcome))
                self._keep(key, kept)
                return outcome
        try:
            client = await SmtpClient.connect(
                address,
                hop.port,
                local_hostname=self.local_hostname,
                timeout=self.connect_timeout,
                timeouts=self.timeouts,
                tls=str(hop.tls_policy),
                tls_server_name=hop.server_name,
            )
        except SmtpError as error:
            self._record(job, hop, address, error, 0, str(error))
            return _connect_failure(hop, address, error)
        try:
            if auth and self.smarthost_auth is not None:
                await client.login(*self.smarthost_auth)
            outcome = await self._send(job, client, hop)
        except SmtpError as error:
            self._record(job, hop, address, client, 0, str(error))
            await client.close()
            return _connect_failure(hop, address, error, client.transcript)
        self._record(job, hop, address, client, 0, _summary(outcome))
        self._keep(key, client)
        return outcome

    def _record(
        self,
        job: RemoteJob,
        hop: Hop,
        address: str,
        source: SmtpClient | SmtpError,
        mark: int,
        outcome: str,
    ) -> None:
        """Hand the flight recorder this attempt's part of the conversation (from ``mark``)."""
        if self.on_attempt is None:
            return
        tls = ""
        if isinstance(source, SmtpClient) and source.tls_version:
            verified = "certificate verified" if source.tls_verified else "not verified"
            tls = f"{source.tls_version} {source.tls_cipher or ''}, {verified}"
        lines = source.transcript[mark:]
        base = source.started_at or time.time()
        # On a kept session this attempt began with its first new line.
        started = base + lines[0].seconds if mark and lines else base
        self.on_attempt(
            Attempt(
                queue_id=job.queue_id,
                domain=job.domain,
                host=hop.host,
                address=address,
                port=hop.port,
                started=started,
                tls=tls,
                reused=mark > 0,
                outcome=outcome,
                lines=tuple((base + ln.seconds, ln.direction, ln.text) for ln in lines),
            )
        )

    def _take(self, key: _PoolKey) -> SmtpClient | None:
        sessions = self._idle.get(key)
        now = time.monotonic()
        while sessions:
            parked, client = sessions.pop()
            if now - parked < self.session_reuse and client.usable:
                return client
            self._retire(client)
        return None

    def _keep(self, key: _PoolKey, client: SmtpClient) -> None:
        sessions = self._idle.setdefault(key, [])
        if not client.usable or len(sessions) >= REUSE_PER_HOST or self.session_reuse <= 0:
            self._retire(client)
            return
        sessions.append((time.monotonic(), client))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())

    def _retire(self, client: SmtpClient) -> None:
        task = asyncio.ensure_future(client.quit())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _sweep(self) -> None:
        """QUIT sessions kept longer than REUSE_IDLE; ends when none is kept."""
        keep = self.session_reuse
        while self._idle:
            await asyncio.sleep(keep / 2)
            now = time.monotonic()
            for key, sessions in list(self._idle.items()):
                stale = [c for parked, c in sessions if now - parked >= keep]
                sessions[:] = [(p, c) for p, c in sessions if now - p < keep]
                if not sessions:
                    del self._idle[key]
                await asyncio.gather(*(c.quit() for c in stale), return_exceptions=True)

    async def _send(
        self, job: RemoteJob, client: SmtpClient, hop: Hop
    ) -> list[RemoteResult] | _Failure:
        envelope = job.envelope
        mta = hop.host
        sent = await client.send(
            reverse_path=envelope.reverse_path,
            recipients=[(t.address, t.notify, t.orcpt) for t in job.targets],
            message=job.source,
            size=job.size,
            body=envelope.body,
            smtputf8=envelope.smtputf8,
            ret=envelope.ret,
            envid=envelope.envid,
        )
        if sent.local_refusal is not None:
            return _all(job.targets, _replied(sent.local_refusal, mta))  # nothing was sent
        with_dsn = client.dsn
        if sent.mail is not None and sent.mail.code >= 400:
            mail = _sent_line(client.transcript, "MAIL FROM:")
            if sent.mail.code < 500:
                return _replied(sent.mail, mta, mail)  # transient, nothing accepted: next host
            return _all(job.targets, _replied(sent.mail, mta, mail))
        results = []
        for target, rcpt in zip(job.targets, sent.recipients, strict=True):
            if rcpt.reply.code >= 400 or sent.data is None:
                final, asked = (
                    rcpt.reply,
                    _sent_line(client.transcript, f"RCPT TO:<{target.address}>"),
                )
            else:
                final, asked = sent.data, END_OF_DATA
            failure = _replied(final, mta, asked)
            results.append(
                RemoteResult(
                    target=target,
                    result=failure.result,
                    remote_mta=mta,
                    diagnostic=failure.diagnostic,
                    dsn_forwarded=with_dsn,
                    command=asked,
                )
            )
        accepted = any(rcpt.reply.is_positive for rcpt in sent.recipients)
        if not accepted and all(r.result.status is Status.DEFERRED for r in results):
            # Every recipient refused for now, none taken: the next host may take them now.
            first = results[0]
            return _Failure(
                result=first.result,
                remote_mta=mta,
                diagnostic=first.diagnostic,
                results=results,
            )
        return results


# Routing failures that mean "DNS did not say where": no such domain, no address for the
# MX hosts or the configured next hop, a lookup that failed (loops and null MX are not).
_DNS_STATUSES = frozenset({"5.1.2", "5.4.4", "4.4.3"})


def _classified(error: RouteError) -> Result:
    status, detail = error.status, error.detail
    dns = isinstance(error, DnsError) or status in _DNS_STATUSES
    reason = Reason.DNS if dns else Reason.OTHER
    if error.transient:
        return Result.deferred(status if status.startswith("4") else "4.4.0", detail, reason)
    return Result.failed(status, detail, reason)


def _error_reason(error: SmtpError) -> Reason:
    """The class of a failed session: TLS whatever was said, else the reply, else ours."""
    if error.failure is LocalFailure.TLS:
        return Reason.TLS
    if error.reply is not None and error.reply.code >= 400:
        reply = error.reply
        return classify_reply(reply.code, reply.enhanced, " ".join(reply.lines))
    if error.failure is not None:
        return classify_local(error.failure)
    return Reason.OTHER


def _replied(reply: Reply, mta: str, command: str | None = None) -> _Failure:
    text = " ".join(reply.lines)
    code = reply.enhanced or f"{str(reply.code)[0]}.0.0"
    diagnostic = f"{reply.code} {reply.enhanced + ' ' if reply.enhanced else ''}{text}"
    said = f"{mta} said: {diagnostic}"[:400]
    if reply.code < 400:
        result = Result.delivered(said)
    elif reply.code < 500:
        result = Result.deferred(code, said, classify_reply(reply.code, reply.enhanced, text))
    else:
        result = Result.failed(code, said, classify_reply(reply.code, reply.enhanced, text))
    return _Failure(result=result, remote_mta=mta, diagnostic=diagnostic[:900], command=command)


def _connect_failure(
    hop: Hop, address: str, error: SmtpError, transcript: Sequence[TimedLine] = ()
) -> _Failure:
    if error.reply is not None and error.reply.code >= 500 and not error.transient:
        # A 5xx greeting or refusal before the transaction: this host will not take it,
        # another may (RFC 5321 5.1); record it as the reason if none does.
        failure = _replied(error.reply, hop.host)
        said = [line.text for line in transcript or error.transcript if line.direction == "C"]
        return _Failure(
            result=Result.deferred("4.4.1", failure.result.detail, _error_reason(error)),
            remote_mta=hop.host,
            diagnostic=failure.diagnostic,
            # QUIT follows a refusal: the command refused is the one before it.
            command=next((c for c in reversed(said) if c != "QUIT"), GREETING),
        )
    where = f"{hop.host}[{address}]:{hop.port}"
    result = Result.deferred("4.4.1", f"{where}: {error}"[:400], _error_reason(error))
    return _Failure(result=result, remote_mta=None)


def _all(targets: Sequence[RemoteTarget], failure: _Failure) -> list[RemoteResult]:
    return [
        RemoteResult(
            target=target,
            result=failure.result,
            remote_mta=failure.remote_mta,
            diagnostic=failure.diagnostic,
            command=failure.command,
        )
        for target in targets
    ]


def _sent_line(transcript: Sequence[TimedLine], start: str) -> str | None:
    """The last command line sent that starts with ``start`` (what a reply answered)."""
    for line in reversed(transcript):
        if line.direction == "C" and line.text.upper().startswith(start.upper()):
            return line.text
    return None


def _summary(outcome: list[RemoteResult] | _Failure) -> str:
    """An attempt's outcome in a few words, for the flight recorder."""
    if isinstance(outcome, _Failure):
        return f"not taken: {outcome.result.detail}"
    return "; ".join(
        f"<{r.target.address}> {r.result.status.value} {r.result.enhanced}" for r in outcome
    )
