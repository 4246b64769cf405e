"""Delivery reports owed by the queue: built with :mod:`hato.dsn`, queued like any message.

A report is queued (durably, through the same intake as mail from SMTP) before the
outcomes that caused it are recorded: a crash in between repeats a report, never loses one.
Reports go out with the null reverse-path, so they never cause reports themselves.
"""

from __future__ import annotations

from ..config import DsnSettings
from ..dsn import (
    REPORT_REVERSE_PATH,
    Action,
    RecipientReport,
    Report,
    return_content,
    write_report,
)
from ..policy import RelayPolicy
from ..spool import Envelope, MessageSource, Recipient
from ._outcomes import Notice
from ._retry import RetryPolicy

# What the envelope of a message Hato wrote itself says instead of SMTP/ESMTP...
LOCAL_PROTOCOL = "local"

__all__ = ["from_outside", "render_notice"]


def from_outside(envelope: Envelope, trusted: RelayPolicy | None) -> bool:
    """Whether the message came from a client that neither authenticated nor is trusted:
    its reverse-path is only the client's word, and may name a bystander."""
    if envelope.auth is not None or envelope.protocol == LOCAL_PROTOCOL:
        return False
    return trusted is None or not trusted.is_trusted(envelope.client_ip)


def render_notice(
    notice: Notice,
    *,
    hostname: str,
    source: MessageSource,
    dsn: DsnSettings,
    retry: RetryPolicy,
    now: float,
    trusted: RelayPolicy | None = None,
) -> tuple[Envelope, bytes]:
    """The report's envelope (from <>, to the original sender) and its bytes.

    ``trusted`` tells the clients whose senders are believed (relay.trusted_networks); a
    message from any other client that did not authenticate returns less (``dsn``).
    """
    entry = notice.entry
    envelope = entry.envelope
    recipients = tuple(
        RecipientReport(
            final_recipient=recipient.address,
            original_recipient=recipient.orcpt,
            action=notice.action,
            status=outcome.status,
            remote_mta=verdict.remote_mta,
            remote_reply=verdict.diagnostic,
            remote_command=verdict.command if verdict.diagnostic else None,
            detail=None if verdict.diagnostic else outcome.detail,
            last_attempt=outcome.last_attempt,
            will_retry_until=(
                envelope.arrival + retry.lifetime if notice.action is Action.DELAYED else None
            ),
        )
        for recipient, outcome, verdict in notice.recipients
    )
    report = Report(
        reporting_mta=hostname,
        queue_id=entry.queue_id,
        original_sender=envelope.reverse_path,
        envid=envelope.envid,
        arrival=envelope.arrival,
        recipients=recipients,
        return_content=return_content(
            envelope.ret,
            entry.size,
            full_limit=dsn.full_message_limit,
            action=notice.action,
            outside_full_limit=(
                dsn.outside_full_limit if from_outside(envelope, trusted) else None
            ),
        ),
    )
    pieces: list[bytes] = []
    with source.open() as original:
        encoding = write_report(
            report, original, pieces.append, now=now, message_id_domain=hostname
        )
    report_envelope = Envelope(
        reverse_path=REPORT_REVERSE_PATH,
        recipients=(Recipient(address=envelope.reverse_path),),
        arrival=now,
        helo=hostname,
        protocol=LOCAL_PROTOCOL,
        body=str(encoding.body) if encoding.body else None,
        smtputf8=encoding.smtputf8,
    )
    return report_envelope, b"".join(pieces)
