"""The operational vocabulary: one small frozen event per thing that happens.

Every component reports through an :class:`EventLog`; the JSON-lines file
(``DATA/log/events.jsonl``) and the readable stderr lines are two views of the one
stream, so what an administrator greps for is what the API will serve later.
The log is not part of the durability promise: it is buffered and flushed often,
not fsynced.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

__all__ = [
    "LEVELS",
    "AuthChecked",
    "AuthSucceeded",
    "ConfigReloadFailed",
    "ConfigReloaded",
    "ConfigRestartNeeded",
    "Connected",
    "Deferred",
    "Delivered",
    "DeliveryFailed",
    "Disconnected",
    "DkimKeyChecked",
    "DnsblUnavailable",
    "DropRefused",
    "DropTaken",
    "EventLog",
    "FilterVerdict",
    "HeloReceived",
    "InternalError",
    "MailAccepted",
    "MessageRemoved",
    "MetricsListening",
    "MilterAction",
    "OpsEvent",
    "ProxyRefused",
    "Queued",
    "RcptAccepted",
    "Rejected",
    "ReportQueued",
    "ServerStarted",
    "ServerStopped",
    "ServerStopping",
    "SpoolRecovered",
    "TlsFailed",
    "TlsReloadFailed",
    "TlsReloaded",
    "TlsStarted",
    "WebStarted",
    "WebUnencrypted",
    "printable",
]

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

# What a terminal would obey rather than show: C0 controls, DEL, C1 controls, the line and
# paragraph separators, the bidirectional overrides (text that reads other than it is), and
# lone surrogates (undecodable bytes, which cannot even be printed).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_CONTROL_BUT_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


# JSON leaves these unescaped (only C0 must be), and a person may still `tail` the file: they
# are written as \u escapes, which every JSON reader turns back into the same text.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` safe for a terminal: every control character as a visible escape (``\\x1b``).

    Whatever a client or a remote server chose (an EHLO name, a reply, a header) passes
    through here before a person sees it. With ``lines`` the text is several lines and its
    line feeds and tabs stay; otherwise they are escaped too, so one line stays one line.
    """
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    return pattern.sub(_escape, text)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsEvent:
    """Base of all events: ``name`` is the JSON ``event`` field, ``level`` its stderr level."""

    name: ClassVar[str] = "event"
    level: ClassVar[str] = "info"

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in _fields(self).items())


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStarted(OpsEvent):
    name: ClassVar[str] = "server_started"
    hostname: str
    version: str
    listen: tuple[str, ...]
    data_dir: str
    implicit_tls: tuple[str, ...] = ()  # listeners that speak TLS from the first byte
    submission: tuple[str, ...] = ()  # message submission listeners (RFC 6409)
    web: tuple[str, ...] = ()  # the HTTP service's listeners (web.listen)

    def describe(self) -> str:
        where = ", ".join(
            [
                *self.listen,
                *(f"{a} (TLS)" for a in self.implicit_tls),
                *(f"{a} (submission)" for a in self.submission),
            ]
        )
        return (
            f"Hato {self.version} on {self.hostname} listening on {where}, data in {self.data_dir}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WebStarted(OpsEvent):
    """The HTTP service listens; ``urls`` are where a person opens the console."""

    name: ClassVar[str] = "web_started"
    urls: tuple[str, ...]

    def describe(self) -> str:
        return f"web console and API at {', '.join(self.urls)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebUnencrypted(OpsEvent):
    """The HTTP service is reachable from other machines without TLS (web.tls)."""

    name: ClassVar[str] = "web_unencrypted"
    level: ClassVar[str] = "warning"
    listen: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"the web console listens beyond loopback on {', '.join(self.listen)} without TLS:"
            " passwords, tokens and session cookies cross the network in clear; set web.tls"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStopping(OpsEvent):
    name: ClassVar[str] = "server_stopping"
    reason: str
    sessions: int

    def describe(self) -> str:
        return f"stopping ({self.reason}); {self.sessions} sessions open"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStopped(OpsEvent):
    name: ClassVar[str] = "server_stopped"
    interrupted_sessions: int

    def describe(self) -> str:
        return f"stopped; {self.interrupted_sessions} sessions told 421"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolRecovered(OpsEvent):
    name: ClassVar[str] = "spool_recovered"
    queued: int
    orphans_removed: int
    broken: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"spool: {self.queued} messages queued, {self.orphans_removed} unfinished removed"
        return text + (f", missing data for {', '.join(self.broken)}" if self.broken else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected(OpsEvent):
    name: ClassVar[str] = "connect"
    level: ClassVar[str] = "debug"
    session: str
    client_ip: str
    client_port: int
    listener: str
    # The proxy (server.proxy_protocol_from) that named this client in a PROXY header.
    via: str = ""

    def describe(self) -> str:
        text = f"session={self.session} connect from [{self.client_ip}]:{self.client_port}"
        return text + (f" via {self.via}" if self.via else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyRefused(OpsEvent):
    """A connection refused before its session: a proxy's PROXY header missing, late or
    malformed, or a PROXY header from an address not in server.proxy_protocol_from."""

    name: ClassVar[str] = "proxy_refused"
    level: ClassVar[str] = "warning"
    client_ip: str
    client_port: int
    listener: str
    reason: str

    def describe(self) -> str:
        return (
            f"connection from [{self.client_ip}]:{self.client_port} on {self.listener} refused:"
            f" {self.reason}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HeloReceived(OpsEvent):
    name: ClassVar[str] = "helo"
    level: ClassVar[str] = "debug"
    session: str
    helo: str
    extended: bool

    def describe(self) -> str:
        verb = "EHLO" if self.extended else "HELO"
        return f"session={self.session} {verb} {self.helo}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MailAccepted(OpsEvent):
    name: ClassVar[str] = "mail"
    level: ClassVar[str] = "debug"
    session: str
    reverse_path: str
    params: dict[str, Any]

    def describe(self) -> str:
        return f"session={self.session} from=<{self.reverse_path}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptAccepted(OpsEvent):
    name: ClassVar[str] = "rcpt"
    level: ClassVar[str] = "debug"
    session: str
    recipient: str
    params: dict[str, Any]

    def describe(self) -> str:
        return f"session={self.session} to=<{self.recipient}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected(OpsEvent):
    """A refusal and its reason: what an administrator looks for when mail does not arrive."""

    name: ClassVar[str] = "reject"
    session: str
    client_ip: str
    command: str  # the stage: CONNECT, EHLO, MAIL, RCPT, DATA, AUTH, ...
    reply: str
    reason: str
    rule: str = ""  # the policy rule or limit that refused; "" for protocol errors
    helo: str = ""
    sender: str | None = None  # None before MAIL; "" is the null reverse-path
    recipient: str = ""

    def describe(self) -> str:
        rule = f" rule={self.rule}" if self.rule else ""
        who = f" helo=<{self.helo}>" if self.helo else ""
        if self.sender is not None:
            who += f" from=<{self.sender}>"
        if self.recipient:
            who += f" to=<{self.recipient}>"
        return (
            f"session={self.session} reject {self.command or '-'} from [{self.client_ip}]"
            f"{who}{rule}: {self.reply} ({self.reason})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSucceeded(OpsEvent):
    """A client proved a user's password (SMTP AUTH). Never carries the password."""

    name: ClassVar[str] = "auth"
    session: str
    client_ip: str
    user: str
    mechanism: str

    def describe(self) -> str:
        return (
            f"session={self.session} auth {self.mechanism} user={self.user} from [{self.client_ip}]"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterVerdict(OpsEvent):
    """A message filter said more than a plain accept: refused, deferred, quarantined, or
    accepted with a warning (a failure or a timeout taken as accept)."""

    name: ClassVar[str] = "filter_verdict"
    level: ClassVar[str] = "warning"
    session: str
    queue_id: str
    filter: str
    action: str  # accept | reject | defer | quarantine
    reason: str
    reply: str = ""  # what the sender was told, with reject and defer
    elapsed: float = 0.0  # seconds the filter took

    def describe(self) -> str:
        origin = f"session={self.session} " if self.session else ""
        told = f": {self.reply}" if self.reply else ""
        return f"{origin}{self.queue_id} filter {self.filter} {self.action}{told} ({self.reason})"


@dataclass(frozen=True, slots=True, kw_only=True)
class MilterAction(OpsEvent):
    """What a milter did beyond "continue": its verdict at a stage, each change it made to
    a message (a header added, the sender changed, ...), or its failure and the default
    action taken."""

    name: ClassVar[str] = "milter_action"
    level: ClassVar[str] = "info"
    session: str
    queue_id: str  # "" before the data
    milter: str
    stage: str  # connect | helo | mail | rcpt | end
    action: str  # accept | reject | tempfail | discard | replycode | quarantine | addheader ...
    detail: str = ""

    def describe(self) -> str:
        origin = f"session={self.session} " if self.session else ""
        message = f"{self.queue_id} " if self.queue_id else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{origin}{message}milter {self.milter} at {self.stage}: {self.action}{detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthChecked(OpsEvent):
    """What the mail authentication found for a message from outside (RFC 8601 words):
    the results its ``Authentication-Results`` field states."""

    name: ClassVar[str] = "auth_checked"
    level: ClassVar[str] = "debug"
    session: str
    queue_id: str
    spf: str  # pass, fail, softfail, neutral, none, temperror, permerror
    dkim: str  # pass when any signature passed, fail, none
    dmarc: str  # pass, fail, none, temperror, permerror
    arc: str  # pass, fail, none

    def describe(self) -> str:
        origin = f"session={self.session} " if self.session else ""
        return (
            f"{origin}{self.queue_id} spf={self.spf} dkim={self.dkim} dmarc={self.dmarc}"
            f" arc={self.arc}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Queued(OpsEvent):
    name: ClassVar[str] = "queued"
    session: str
    queue_id: str
    size: int
    reverse_path: str
    recipients: tuple[str, ...]
    client_ip: str
    message_id: str = ""  # the Message-ID header field's value, when the message has one
    # Seconds from the end of the data to durable (the 250): the filters, then the copies
    # delivered in the DATA phase or the group commit.
    elapsed: float = 0.0
    # The way in (spool.Origin's value): smtp, submission, report, sendmail, pickup.
    origin: str = ""

    def describe(self) -> str:
        origin = f"session={self.session} " if self.session else ""
        if self.client_ip:
            client = f" client=[{self.client_ip}]"
        elif self.origin in ("sendmail", "pickup"):
            client = f" (from {self.origin})"
        else:
            client = " (written by Hato)"
        return (
            f"{origin}queued {self.queue_id}: from=<{self.reverse_path}> "
            f"size={self.size} nrcpt={len(self.recipients)}{client}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected(OpsEvent):
    name: ClassVar[str] = "disconnect"
    level: ClassVar[str] = "debug"
    session: str
    client_ip: str
    messages: int
    recipients: int
    errors: int
    seconds: float
    reason: str

    def describe(self) -> str:
        return (
            f"session={self.session} disconnect from [{self.client_ip}] ({self.reason}) "
            f"messages={self.messages} rcpt={self.recipients} errors={self.errors} "
            f"time={self.seconds:.3f}s"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsStarted(OpsEvent):
    """A client's TLS handshake finished (after STARTTLS, or on an implicit TLS listener)."""

    name: ClassVar[str] = "tls_started"
    level: ClassVar[str] = "debug"
    session: str
    version: str
    cipher: str
    implicit: bool

    def describe(self) -> str:
        how = "implicit TLS" if self.implicit else "STARTTLS"
        return f"session={self.session} {how}: {self.version} {self.cipher}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFailed(OpsEvent):
    """A TLS handshake after STARTTLS failed; that connection is closed, the others go on."""

    name: ClassVar[str] = "tls_failed"
    level: ClassVar[str] = "warning"
    session: str
    client_ip: str
    reason: str

    def describe(self) -> str:
        return f"session={self.session} TLS handshake with [{self.client_ip}] failed: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsblUnavailable(OpsEvent):
    """A DNS blocklist gave no answer in time: the client was taken as not listed there."""

    name: ClassVar[str] = "dnsbl_unavailable"
    level: ClassVar[str] = "warning"
    session: str
    client_ip: str
    zone: str
    reason: str

    def describe(self) -> str:
        return (
            f"session={self.session} DNS blocklist {self.zone} unavailable for"
            f" [{self.client_ip}] ({self.reason}): taken as not listed"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimKeyChecked(OpsEvent):
    """A DKIM key's published record was looked up and did not simply match (a match is
    recorded in the key store, not logged): a mismatch stops signing with the key."""

    name: ClassVar[str] = "dkim_key_checked"
    level: ClassVar[str] = "warning"
    domain: str
    selector: str
    state: str  # "missing", "mismatch" or "temperror"
    detail: str
    signing: bool  # whether the key is still used (a mismatch is not, unless configured)

    def describe(self) -> str:
        use = "still signing with it" if self.signing else "not signing with it"
        return (
            f"DKIM key {self.selector}._domainkey.{self.domain}: {self.state} ({self.detail});"
            f" {use}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsReloaded(OpsEvent):
    """The certificate was (re)loaded; new handshakes use it, sessions in TLS keep theirs."""

    name: ClassVar[str] = "tls_reloaded"
    certificate: str
    self_signed: bool
    not_after: str

    def describe(self) -> str:
        kind = " (self-signed)" if self.self_signed else ""
        return f"TLS certificate {self.certificate}{kind} loaded, valid until {self.not_after}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloaded(OpsEvent):
    """SIGHUP read the configuration file again: ``applied`` keys are in force for new
    sessions; ``restart_needed`` keys changed in the file but take a restart."""

    name: ClassVar[str] = "config_reloaded"
    applied: tuple[str, ...]
    restart_needed: tuple[str, ...]

    def describe(self) -> str:
        applied = ", ".join(self.applied) or "nothing changed"
        text = f"configuration reloaded: {applied}"
        if self.restart_needed:
            text += f"; changed but needing a restart: {', '.join(self.restart_needed)}"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigRestartNeeded(OpsEvent):
    """Keys changed in the file that a reload cannot apply (listen addresses, data_dir...)."""

    name: ClassVar[str] = "config_restart_needed"
    level: ClassVar[str] = "warning"
    keys: tuple[str, ...]

    def describe(self) -> str:
        return f"these settings changed but apply only after a restart: {', '.join(self.keys)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloadFailed(OpsEvent):
    """SIGHUP found the configuration file in error; the settings in force stay."""

    name: ClassVar[str] = "config_reload_failed"
    level: ClassVar[str] = "error"
    error: str

    def describe(self) -> str:
        return f"configuration not reloaded, keeping the one in force: {self.error}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsReloadFailed(OpsEvent):
    """SIGHUP could not load the certificate; the previous one stays in use."""

    name: ClassVar[str] = "tls_reload_failed"
    level: ClassVar[str] = "error"
    error: str

    def describe(self) -> str:
        return f"TLS certificate not reloaded, keeping the previous one: {self.error}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered(OpsEvent):
    name: ClassVar[str] = "delivered"
    queue_id: str
    recipient: str
    mailbox: str
    status: str
    detail: str
    remote: bool = False  # handed to another server (else into a local mailbox)

    def describe(self) -> str:
        via = f" (mailbox {self.mailbox})" if self.mailbox != self.recipient else ""
        return f"{self.queue_id}: to=<{self.recipient}>{via} status=sent ({self.detail})"


def _orig_to(original: str | None) -> str:
    """Postfix's ``orig_to=``: the address as queued, beside the one it expanded to."""
    return "" if original is None else f" orig_to=<{original}>"


def _why(reason_class: str | None) -> str:
    return "" if reason_class is None else f"; reason={reason_class}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deferred(OpsEvent):
    name: ClassVar[str] = "deferred"
    level: ClassVar[str] = "warning"
    queue_id: str
    recipient: str
    status: str
    detail: str
    attempts: int
    next_attempt: float
    # The queued recipient, when ``recipient`` is an address it expanded to (an alias).
    original: str | None = None
    # Why, as a class (delivery.Reason: "greylisted", "blocklisted", ...).
    reason_class: str | None = None
    remote: bool = False  # the attempt was to another server (else a local mailbox)

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.next_attempt))
        return (
            f"{self.queue_id}: to=<{self.recipient}>{_orig_to(self.original)} status=deferred"
            f" {self.status} "
            f"({self.detail}); attempt {self.attempts}, next at {when}{_why(self.reason_class)}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryFailed(OpsEvent):
    """A recipient that will not get the message: the data a delivery report needs."""

    name: ClassVar[str] = "failed"
    level: ClassVar[str] = "warning"
    queue_id: str
    recipient: str
    status: str
    detail: str
    reverse_path: str
    original: str | None = None  # as in Deferred
    reason_class: str | None = None  # as in Deferred
    remote: bool = False  # as in Deferred

    def describe(self) -> str:
        return (
            f"{self.queue_id}: to=<{self.recipient}>{_orig_to(self.original)} status=bounced"
            f" {self.status} "
            f"({self.detail}); sender <{self.reverse_path}>{_why(self.reason_class)}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportQueued(OpsEvent):
    """A delivery status notification (RFC 3464) was queued for a message's sender."""

    name: ClassVar[str] = "report"
    queue_id: str
    report_id: str
    action: str
    recipients: tuple[str, ...]
    sender: str

    def describe(self) -> str:
        return (
            f"{self.queue_id}: sender non-delivery notification: {self.report_id}"
            if self.action == "failed"
            else f"{self.queue_id}: {self.action} report {self.report_id} to <{self.sender}>"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRemoved(OpsEvent):
    name: ClassVar[str] = "removed"
    queue_id: str
    delivered: int
    failed: int

    def describe(self) -> str:
        return f"{self.queue_id}: removed (delivered={self.delivered} failed={self.failed})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DropTaken(OpsEvent):
    """A file of the maildrop (``sendmail``) or the pickup directory went through the
    intake and was removed: ``queue_id`` is what it became."""

    name: ClassVar[str] = "drop_taken"
    directory: str  # "maildrop" or "pickup"
    file: str
    queue_id: str
    user: str = ""  # the maildrop file's owner, "UID NAME"

    def describe(self) -> str:
        who = f" from userid {self.user}" if self.user else ""
        return f"{self.directory}/{printable(self.file)}{who}: taken as {self.queue_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DropRefused(OpsEvent):
    """A maildrop or pickup file that cannot be queued, moved to ``bad/`` beside a
    ``.reason`` file (never deleted); or, ``kept`` True, one left to try again later."""

    name: ClassVar[str] = "drop_refused"
    level: ClassVar[str] = "warning"
    directory: str
    file: str
    reason: str
    kept: bool = False
    user: str = ""

    def describe(self) -> str:
        where = "kept to try again" if self.kept else f"moved to {self.directory}/bad/"
        return f"{self.directory}/{printable(self.file)}: {printable(self.reason)}; {where}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsListening(OpsEvent):
    """The Prometheus metrics are served on these sockets (``[metrics] listen``)."""

    name: ClassVar[str] = "metrics_listening"
    listen: tuple[str, ...]

    def describe(self) -> str:
        return "metrics on " + ", ".join(f"http://{a}/metrics" for a in self.listen)


@dataclass(frozen=True, slots=True, kw_only=True)
class InternalError(OpsEvent):
    """Our own bug, caught at a boundary so the session ends cleanly instead of hanging."""

    name: ClassVar[str] = "internal_error"
    level: ClassVar[str] = "error"
    where: str
    error: str
    session: str = ""


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _fields(event: OpsEvent) -> dict[str, Any]:
    # dataclasses.fields() is slow for a per-event path; the names never change per class.
    kind = type(event)
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(event))
    return {name: getattr(event, name) for name in names}


class EventLog:
    """Writes each event as a JSON line and, at or above ``level``, a readable stderr line.

    Thread-safe (the spool's committer thread may report too). JSON lines are buffered;
    the owner calls :meth:`flush` periodically and :meth:`close` at the end.
    """

    def __init__(
        self,
        *,
        json_path: Path | None = None,
        stream: TextIO | None = None,
        level: str = "info",
    ) -> None:
        self._threshold = LEVELS[level]
        self._stream = stream
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._listeners: tuple[Callable[[float, OpsEvent], None], ...] = ()
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = json_path.open("a", encoding="utf-8", buffering=1 << 16)

    def set_level(self, level: str) -> None:
        """What stderr shows from now on (log.level, changed by SIGHUP)."""
        self._threshold = LEVELS[level]

    @classmethod
    def to_stderr(cls, level: str = "info", json_path: Path | None = None) -> EventLog:
        return cls(json_path=json_path, stream=sys.stderr, level=level)

    def subscribe(self, listener: Callable[[float, OpsEvent], None]) -> None:
        """Also hand every event, with its time, to ``listener`` (the flight recorder).

        It is called on the emitting thread and must be quick and must not raise.
        """
        self._listeners = (*self._listeners, listener)

    def emit(self, event: OpsEvent) -> None:
        now = time.time()
        for listener in self._listeners:
            listener(now, event)
        show = self._stream is not None and LEVELS[event.level] >= self._threshold
        if self._file is None and not show:
            return
        with self._lock:
            if self._file is not None:
                record = {"ts": round(now, 6), "event": event.name, **_fields(event)}
                line = json.dumps(record, ensure_ascii=False, default=str)
                self._file.write(_JSON_UNSAFE.sub(_json_escape, line) + "\n")
            if show and self._stream is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                line = printable(event.describe())
                self._stream.write(f"{stamp}Z hato {event.level}: {line}\n")

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
            if self._stream is not None:
                self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
