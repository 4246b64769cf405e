"""Delivery over LMTP (RFC 2033), to a unix socket or a TCP port: Dovecot's way in.

Promises:
- One LMTP transaction per message and destination, over ``SmtpClient(lmtp=True)``: the
  same engine and glue as SMTP, greeting with LHLO.
- Each recipient's result is its own reply: a refused RCPT, or the reply after the data
  that RFC 2033 4.2 gives every accepted recipient. ``452`` for one recipient (Dovecot's
  answer to a mailbox over quota with ``quota_full_tempfail``) defers only that one; ``5xx``
  fails only that one, and the queue reports it as for any agent.
- A connection lost among those replies keeps the replies read: recipients already
  answered keep their outcome, those left without a reply are DEFERRED (4.4.2), so nothing
  accepted is taken for delivered and nothing delivered is delivered twice by the queue.
- The server that could not be reached defers every recipient (4.4.1): a local delivery
  agent that is down is our trouble, never the sender's.
- Results name the transport (``lmtp:unix:/path said: ...``) and the flight recorder gets
  each attempt with its transcript, as for SMTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from hato.config import LmtpTarget
from hato.delivery._classify import Reason
from hato.delivery._remote_types import RemoteAgent, RemoteJob, RemoteResult, RemoteTarget
from hato.delivery._result import Result
from hato.delivery._smtp import END_OF_DATA, _replied
from hato.delivery._smtp_client import (
    BAD_CONNECTION,
    SendResult,
    SmtpClient,
    SmtpError,
    Timeouts,
)
from hato.smtp import Reply
from hato.trace import Attempt

__all__ = ["LmtpAgent", "TransportAgent"]


class LmtpAgent:
    """Hands messages to LMTP servers: per domain (``destinations``), else ``default``."""

    def __init__(
        self,
        *,
        local_hostname: str,
        destinations: Mapping[str, LmtpTarget] | None = None,
        default: LmtpTarget | None = None,
        connect_timeout: float = 30.0,
        timeouts: Timeouts | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        self.local_hostname = local_hostname
        self.destinations = dict(destinations or {})
        self.default = default
        self.connect_timeout = connect_timeout
        self.timeouts = timeouts or Timeouts()
        self.on_attempt = on_attempt

    def handles(self, domain: str) -> bool:
        """Whether the transport table sends ``domain`` here (rather than over SMTP)."""
        return domain in self.destinations

    async def close(self) -> None:
        """Nothing is kept: a local LMTP connection costs little to open."""

    async def deliver(self, job: RemoteJob) -> list[RemoteResult]:
        target = self.destinations.get(job.domain, self.default)
        if target is None:
            result = Result.deferred("4.3.5", f"no LMTP server for {job.domain}")
            return [RemoteResult(target=t, result=result) for t in job.targets]
        name = str(target)
        try:
            client = await self._connect(target)
        except SmtpError as error:
            self._record(job, target, error, str(error))
            result = Result.deferred(
                error.enhanced if error.transient else "4.4.1",
                f"{name}: {error}"[:400],
                Reason.CONNECTION,
            )
            return [RemoteResult(target=t, result=result) for t in job.targets]
        try:
            sent = await client.send(
                reverse_path=job.envelope.reverse_path,
                recipients=[t.address for t in job.targets],
                message=job.source,
                size=job.size,
                body=job.envelope.body,
                smtputf8=job.envelope.smtputf8,
            )
        except SmtpError as error:
            self._record(job, target, client, str(error))
            await client.close()
            result = Result.deferred(error.enhanced, f"{name}: {error}"[:400], Reason.CONNECTION)
            return [RemoteResult(target=t, result=result) for t in job.targets]
        results = _per_recipient(job.targets, sent, name)
        self._record(job, target, client, _summary(results))
        await client.quit()
        return results

    async def _connect(self, target: LmtpTarget) -> SmtpClient:
        address = target.address
        return await SmtpClient.connect(
            address.host if address is not None else "localhost",
            address.port if address is not None else 0,
            local_hostname=self.local_hostname,
            timeout=self.connect_timeout,
            timeouts=self.timeouts,
            tls="none",
            lmtp=True,
            unix_path=target.path,
        )

    def _record(
        self, job: RemoteJob, target: LmtpTarget, source: SmtpClient | SmtpError, outcome: str
    ) -> None:
        if self.on_attempt is None:
            return
        base = source.started_at or time.time()
        address = target.address
        self.on_attempt(
            Attempt(
                queue_id=job.queue_id,
                domain=job.domain,
                host=str(target),
                address=address.host if address is not None else f"unix:{target.path}",
                port=address.port if address is not None else 0,
                started=base,
                tls="",
                reused=False,
                outcome=outcome,
                lines=tuple((base + ln.seconds, ln.direction, ln.text) for ln in source.transcript),
            )
        )


def _per_recipient(
    targets: Sequence[RemoteTarget], sent: SendResult, name: str
) -> list[RemoteResult]:
    """Each target's outcome: its RCPT refusal, its reply after the data, or none yet."""
    if sent.local_refusal is not None:
        return [_result(t, sent.local_refusal, name, None) for t in targets]
    if sent.mail is None or not sent.mail.is_positive:
        mail = sent.mail
        if mail is None:
            result = Result.deferred(BAD_CONNECTION, f"{name}: no reply to MAIL")
            return [RemoteResult(target=t, result=result) for t in targets]
        return [_result(t, mail, name, "MAIL FROM") for t in targets]
    after_data = iter(sent.per_recipient)
    lmtp_phase = bool(sent.per_recipient) or sent.interrupted is not None
    results = []
    for target, rcpt in zip(targets, sent.recipients, strict=True):
        if not rcpt.reply.is_positive:
            results.append(_result(target, rcpt.reply, name, f"RCPT TO:<{target.address}>"))
        elif not lmtp_phase:
            # DATA itself refused (or never answered): every accepted recipient shares it.
            if sent.data is None:
                result = Result.deferred(BAD_CONNECTION, f"{name}: DATA was not answered")
                results.append(RemoteResult(target=target, result=result))
            else:
                results.append(_result(target, sent.data, name, "DATA"))
        elif (final := next(after_data, None)) is not None:
            results.append(_result(target, final.reply, name, END_OF_DATA))
        else:
            detail = f"{name}: no reply for this recipient after the data: {sent.interrupted}"
            result = Result.deferred(BAD_CONNECTION, detail[:400], Reason.CONNECTION)
            results.append(RemoteResult(target=target, result=result))
    return results


def _result(target: RemoteTarget, reply: Reply, name: str, asked: str | None) -> RemoteResult:
    failure = _replied(reply, name, asked)
    return RemoteResult(
        target=target,
        result=failure.result,
        remote_mta=name,
        diagnostic=failure.diagnostic,
        command=asked,
    )


def _summary(results: Sequence[RemoteResult]) -> str:
    return "; ".join(
        f"<{r.target.address}> {r.result.status.value} {r.result.enhanced}" for r in results
    )


class TransportAgent:
    """The remote agent the queue uses: LMTP for domains the transport table sends there,
    SMTP for the rest."""

    def __init__(self, smtp: RemoteAgent, lmtp: LmtpAgent) -> None:
        self.smtp = smtp
        self.lmtp = lmtp

    async def deliver(self, job: RemoteJob) -> list[RemoteResult]:
        if self.lmtp.handles(job.domain):
            return await self.lmtp.deliver(job)
        return await self.smtp.deliver(job)

    async def close(self) -> None:
        await self.smtp.close()
        await self.lmtp.close()
