"""Delivery agents (layer 3): how a queued message reaches its recipients.

An agent takes jobs, one per recipient, and answers each with a ``Result`` classified
where the failure happened: DELIVERED, DEFERRED (transient: the queue retries) or FAILED
(permanent: the queue reports to the sender; agents never send bounces themselves).

``MaildirAgent`` promises:

- ``deliver(jobs)`` returns only when every DELIVERED copy is durable in its mailbox's new/:
  each copy is written into tmp/, linked into new/, and the batch is synced once (one
  syncfs(2) per file system, or portably an fsync of each file and of each new/ directory).
- Each copy is ``Return-Path: <reverse-path>``, ``Delivered-To: <address>`` and then the
  spooled message byte for byte, CRLF line ends included (Dovecot reads CRLF and LF alike).
- Delivery is idempotent per (queue ID, recipient index): the file name is derived from
  them, so a repeated job finds its copy in new/ and stores no second one; with
  ``recheck=True`` (after a crash) it also finds a copy an IMAP client moved to cur/.
- Disk trouble (no space, quota, permissions, I/O errors, a missing queue file) is
  DEFERRED with a 4.x.x code; a mail loop (too many Received headers, or our own
  Delivered-To already present) is FAILED with 5.4.6.
- ``usage(domain, local_part, quota)`` answers from the mailbox's Maildir++ ``maildirsize``
  (which deliveries update and Dovecot shares) without listing it; counts run in a thread.
- Every result that is not DELIVERED carries a ``Reason`` (``_classify.py``): why, in one
  of a few classes an operator can act on (blocklisted, rate-limited, greylisted, TLS, DNS,
  mailbox full, connection, policy, other), decided from the reply or the local failure
  where it happened.
- Memory stays small whatever the message size: the header is scanned line by line and
  the body copied in 256 KiB chunks.

``LmtpAgent`` hands mail to an LMTP server (RFC 2033) such as Dovecot's, per domain of the
transport table or for every local mailbox (``accounts.delivery``), with a result per
recipient as the server gave it (``_lmtp.py``); ``TransportAgent`` picks LMTP or SMTP.
"""

from hato.delivery._classify import (
    EXPLANATIONS,
    Explanation,
    LocalFailure,
    Reason,
    classify_local,
    classify_reply,
)
from hato.delivery._destinations import Destination, destinations, reason_of
from hato.delivery._lmtp import LmtpAgent, TransportAgent
from hato.delivery._maildir import MaildirAgent, MaildirJob
from hato.delivery._maildirsize import Usage
from hato.delivery._reading import MaildirMessage
from hato.delivery._remote_types import RemoteAgent, RemoteJob, RemoteResult, RemoteTarget
from hato.delivery._result import Result, Status, os_error_result
from hato.delivery._smtp import SmtpAgent
from hato.delivery._smtp_client import (
    RecipientReply,
    SendResult,
    SmtpClient,
    SmtpError,
    TimedLine,
    Timeouts,
)

__all__ = [
    "EXPLANATIONS",
    "Destination",
    "Explanation",
    "LmtpAgent",
    "LocalFailure",
    "MaildirAgent",
    "MaildirJob",
    "MaildirMessage",
    "Reason",
    "RecipientReply",
    "RemoteAgent",
    "RemoteJob",
    "RemoteResult",
    "RemoteTarget",
    "Result",
    "SendResult",
    "SmtpAgent",
    "SmtpClient",
    "SmtpError",
    "Status",
    "TimedLine",
    "Timeouts",
    "TransportAgent",
    "Usage",
    "classify_local",
    "classify_reply",
    "destinations",
    "os_error_result",
    "reason_of",
]
