"""Closing the loop: wait for the delivery report to our test message in a local mailbox.

The report is matched by the ENVID we sent (RFC 3464 2.2.1 Original-Envelope-Id), so an
older report, or one to another message, is never taken for it. Only files that were not
in the mailbox before the message was sent are read.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.parser
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..smtp import AddressError, xtext_decode
from ._report import LoopOutcome

__all__ = ["ReportMailbox", "find_report", "wait_for_report"]

POLL_INTERVAL = 0.2
_FINAL = ("delivered", "relayed", "expanded", "failed")
_MAX_REPORT = 16 * 1024 * 1024  # a report larger than this is not read (nor ours)


@dataclass(frozen=True, slots=True)
class ReportMailbox:
    """Where reports to ``address`` land: its Maildirs (an alias may lead to several)."""

    address: str
    maildirs: tuple[Path, ...]

    def snapshot(self) -> set[Path]:
        return set(self._files())

    def _files(self) -> list[Path]:
        found: list[Path] = []
        for maildir in self.maildirs:
            for folder in ("new", "cur"):
                try:
                    with os.scandir(maildir / folder) as entries:
                        found.extend(Path(e.path) for e in entries if e.is_file())
                except (FileNotFoundError, NotADirectoryError):
                    continue
        return found


async def wait_for_report(
    mailbox: ReportMailbox, envid: str, before: set[Path], timeout: float
) -> LoopOutcome:
    started = time.monotonic()
    seen = set(before)
    delayed: LoopOutcome | None = None
    while True:
        for path in mailbox.snapshot() - seen:
            seen.add(path)
            outcome = find_report(path, envid, mailbox.address, time.monotonic() - started)
            if outcome is None:
                continue
            if outcome.outcome in _FINAL:
                return outcome
            delayed = outcome
        waited = time.monotonic() - started
        if waited >= timeout:
            return delayed or LoopOutcome(
                outcome="no-report", envid=envid, mailbox=mailbox.address, waited=round(waited, 1)
            )
        await asyncio.sleep(min(POLL_INTERVAL, timeout - waited))


def find_report(path: Path, envid: str, address: str, waited: float) -> LoopOutcome | None:
    """The outcome the report in ``path`` gives, if it is the report to ``envid``."""
    try:
        if path.stat().st_size > _MAX_REPORT:
            return None
        data = path.read_bytes()
    except OSError:
        return None  # moved to cur/ by an IMAP client meanwhile: the next pass finds it
    message = email.message_from_bytes(data)
    for part in message.walk():
        if part.get_content_type() not in (
            "message/delivery-status",
            "message/global-delivery-status",
        ):
            continue
        blocks = _blocks(part)
        if not blocks or not _same_envid(blocks[0].get("Original-Envelope-Id"), envid):
            continue
        recipients = [block for block in blocks[1:] if block.get("Action")]
        if not recipients:
            continue
        first = recipients[0]
        action = str(first.get("Action", "")).strip().lower()
        if action not in (*_FINAL, "delayed"):
            continue
        return LoopOutcome(
            outcome=action,  # type: ignore[arg-type]
            envid=envid,
            mailbox=address,
            waited=round(waited, 1),
            recipient=_value(first.get("Final-Recipient")),
            status=_field(first.get("Status")),
            remote_mta=_value(first.get("Remote-MTA")),
            diagnostic=_value(first.get("Diagnostic-Code")),
            report_file=str(path),
        )
    return None


def _blocks(part: email.message.Message) -> list[email.message.Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, email.message.Message)]
    # message/global-delivery-status (RFC 6533) is not parsed into blocks by the library.
    text = part.get_payload(decode=True)
    if not isinstance(text, bytes):
        return []
    parser = email.parser.HeaderParser()
    chunks = text.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n")
    return [parser.parsestr(chunk) for chunk in chunks if chunk.strip()]


def _same_envid(value: object, envid: str) -> bool:
    if value is None:
        return False
    text = " ".join(str(value).split())
    try:
        return text == envid or xtext_decode(text) == envid
    except AddressError:
        return False


def _field(value: object) -> str | None:
    return None if value is None else " ".join(str(value).split())


def _value(value: object) -> str | None:
    """``dns; mx.example.com`` or ``smtp; 550 5.1.1 ...``: the part after the type."""
    text = _field(value)
    if text is None:
        return None
    _kind, semicolon, rest = text.partition(";")
    return rest.strip() if semicolon else text
