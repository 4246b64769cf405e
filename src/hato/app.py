"""The composition root: builds every service from the settings and runs them together.

Nothing else in Hato constructs services or reaches across layers; tests build a
:class:`Hato` the same way ``hato serve`` does, with a temporary data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import __version__
from .accounts import ACCOUNTS_FILE, AccountError, AccountStore
from .config import LmtpTarget, ServerRecord, Settings, changed_keys, with_keys, write_server_record
from .delivery import LmtpAgent, MaildirAgent, RemoteAgent, SmtpAgent, TransportAgent
from .diag import PROBES_DIR, InboundProbe, ProbeStore
from .dovecot import DovecotPasswords, DovecotUnavailable, DovecotUserdb
from .drop import DATA_DIR_MODE, DropTaker
from .events import (
    ConfigReloaded,
    ConfigReloadFailed,
    ConfigRestartNeeded,
    DkimKeyChecked,
    EventLog,
    InternalError,
    MetricsListening,
    ServerStarted,
    ServerStopped,
    SpoolRecovered,
    TlsReloaded,
    TlsReloadFailed,
    WebStarted,
    WebUnencrypted,
)
from .host import (
    ActivationError,
    Notifier,
    PrivilegeError,
    drop_privileges,
    inherited_sockets,
    own_data_dir,
    run_as,
)
from .mailauth import DkimKeys, MailDns, Srs, check_published, load_srs_secret
from .metrics import Metrics, MetricsListener, metrics_app
from .pipeline import (
    DkimSigning,
    InboundChecks,
    MessageFilter,
    Pipeline,
    PipelineIntake,
    build_pipeline,
)
from .policy import AccessPolicy
from .queue import QueueManager, RetryPolicy
from .routing import (
    DnspythonResolver,
    LocalRouter,
    NextHopRouter,
    confirmed_name,
    local_host_matcher,
)
from .server import (
    Authenticator,
    Checks,
    ServerContext,
    ServerTls,
    SmtpServer,
    SubmissionRules,
    TlsError,
    bind,
    limits_from,
)
from .spool import (
    Envelope,
    MessageSource,
    Origin,
    QueueState,
    QueueSummary,
    Refusal,
    Spool,
    SpoolError,
)
from .trace import TRACE_FILE, Attempt, Recorder
from .web import (
    ADMIN,
    WEB_FILE,
    EventHub,
    WebContext,
    WebService,
    WebUserError,
    WebUsers,
    beyond_loopback,
    build_app,
)

__all__ = ["EX_TEMPFAIL", "DataDirInUse", "DataDirLock", "Hato", "install_event_loop_policy", "run"]

LOG_FLUSH_INTERVAL = 0.25
# How often the server looks up its DKIM keys' published records (also at start).
DKIM_CHECK_INTERVAL = 3600.0
# The data directory's lock, holding the pid of the Hato that owns the directory.
LOCK_FILE = "hato.pid"
PRIVATE_DIR = 0o700
# Under the data directory: the DKIM keys (hato dkim) and the SRS secret.
DKIM_DIR = "dkim"
SRS_SECRET_FILE = "srs.key"
# sysexits.h: "try again later", as once the other server has stopped.
EX_TEMPFAIL = 75
# How long closing the stores may take beyond server.shutdown_grace before a stop that
# has not finished is reported, with what it waits on.
STOP_SLACK = 12.0

# What SIGHUP applies live (prefixes of section.key); any other change takes a restart.
LIVE_KEYS = (
    "policy.",
    "relay.trusted_networks",
    "relay.transports",
    "relay.tls_policy",
    "relay.smarthost",
    "relay.port",
    "tls.certificate",
    "tls.key",
    "log.level",
)

T = TypeVar("T")


class DataDirInUse(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"another Hato (pid {pid})" if pid is not None else "another Hato"
        super().__init__(f"{who} is using {data_dir}")
        self.data_dir = data_dir
        self.pid = pid


class DataDirLock:
    """One Hato per data directory: an exclusive lock on ``DATA/hato.pid``, taken before
    anything else there is touched (log, trace, accounts, certificate, spool).

    The kernel releases the lock when the process ends however it ends, so a pid left
    behind by a crash never stops the next start; the pid is only read while locked.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(data_dir, pid) from None
        self._fd: int | None = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        # Mail, addresses, user names tried and the TLS key live here: Hato's user only,
        # also for a directory an administrator made (or an older Hato left) more open.
        # Others may only pass through, to the maildrop (``sendmail``), and list nothing.
        if stat.S_IMODE(data_dir.stat().st_mode) != DATA_DIR_MODE:
            data_dir.chmod(DATA_DIR_MODE)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # still locked: no other Hato can be reading it
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except (OSError, ValueError):  # written an instant from now, or not by a Hato
        return None


class Hato:
    """One running Hato: spool, SMTP listeners and the event log."""

    def __init__(
        self,
        settings: Settings,
        *,
        log: EventLog | None = None,
        filters: tuple[MessageFilter, ...] = (),
    ) -> None:
        """``filters``: message filters to run after the built-in ones (see ``pipeline``)."""
        self.settings = settings
        # First of all: a second server must not touch what the running one uses.
        self.lock = DataDirLock(settings.server.data_dir)
        try:
            self._build(settings, log, filters)
        except BaseException:
            self.lock.release()
            raise

    def _build(
        self, settings: Settings, log: EventLog | None, filters: tuple[MessageFilter, ...]
    ) -> None:
        self._filters = filters
        # Called with the new settings after each reload applied them (milters, say).
        self.on_reload: list[Callable[[Settings], None]] = []
        self._remote: SmtpAgent | None = None
        events_file = settings.log.events_file
        self.log = log or EventLog.to_stderr(
            level=str(settings.log.level), json_path=Path(events_file) if events_file else None
        )
        self.spool = Spool(
            settings.server.data_dir,
            sync=str(settings.spool.sync),
            max_batch=settings.spool.max_batch,
        )
        data_dir = settings.server.data_dir
        accounts = settings.accounts
        self.accounts = AccountStore(
            data_dir / ACCOUNTS_FILE,
            case_sensitive=accounts.case_sensitive_local_parts,
            config_domains=settings.server.local_domains,
        )
        # Forwarding through aliases rewrites foreign senders (SRS); bounces to those
        # addresses come back here and are sent on to the original sender.
        mailauth = settings.mailauth
        self.srs: Srs | None = None
        if mailauth.srs:
            self.srs = Srs(
                load_srs_secret(data_dir / SRS_SECRET_FILE),
                mailauth.srs_domain or settings.server.hostname,
            )
        # Test addresses (hato test --receive): accepted at RCPT, analysed, never delivered.
        self.probes = ProbeStore(data_dir / PROBES_DIR)
        self.router = LocalRouter(
            self.accounts,
            config_domains=settings.server.local_domains,
            hostname=settings.server.hostname,
            delimiter=accounts.recipient_delimiter,
            case_sensitive=accounts.case_sensitive_local_parts,
            postmaster=accounts.postmaster,
            reverse_srs=self.srs.reverse if self.srs is not None else None,
            probe=self.probes.check,
            external_users=accounts.userdb is not None,
        )
        self.dkim_keys = DkimKeys(data_dir / DKIM_DIR, retire_after=settings.dkim.retire_after)
        self.mail_dns = MailDns(settings.dns.nameservers, settings.dns.timeout)
        self.maildir = MaildirAgent(
            data_dir / "mailboxes",
            hostname=settings.server.hostname,
            sync=str(settings.spool.sync),
            max_received=settings.queue.max_received,
        )
        self.queue: QueueManager | None = None
        self.resolver = DnspythonResolver(settings.dns.nameservers, timeout=settings.dns.timeout)
        self.intake = PipelineIntake(
            spool=self.spool,
            pipeline=self._pipeline(),
            log=self.log,
            notify=self._queued,
            deliver_in_data=self._deliver_in_data if settings.queue.deliver_in_data else None,
        )
        # Mail from local programs: the maildrop (sendmail) and the pickup directory.
        self.drops = DropTaker(
            data_dir=data_dir,
            intake=self.intake,
            log=self.log,
            hostname=settings.server.hostname,
            max_size=settings.smtp.max_message_size,
        )
        # The flight recorder: the event stream and every conversation (hato trace).
        self.recorder: Recorder | None = None
        if settings.trace.enabled:
            self.recorder = Recorder(data_dir / TRACE_FILE, retention=settings.trace.retention)
            self.log.subscribe(self.recorder.event)
        # Prometheus metrics: counted from the same stream, the queue read when scraped.
        self.metrics: Metrics | None = None
        self._metrics_listener: MetricsListener | None = None
        if settings.metrics.enabled:
            self.metrics = Metrics(queue_summary=self._queue_summary)
            self.log.subscribe(self.metrics.event)
        self.tls = self._load_tls()
        self._build_web(settings)
        resolver = self.resolver
        maildir = self.maildir
        self.context = ServerContext(
            settings=settings,
            log=self.log,
            limits=limits_from(settings),
            intake=self.intake,
            checks=Checks(
                settings,
                router=self.router,
                # Quota at RCPT: what the delivery layer knows of the mailbox, no listing.
                usage=lambda domain, local, quota: maildir.usage(domain, local, quota).bytes,
                log=self.log,
                dnsbl_lookup=resolver.a_records,
                userdb=self._userdb(),
            ),
            submission=SubmissionRules(
                self.router, sender_login_match=settings.auth.sender_login_match
            ),
            auth=self._authenticator(),
            tls=self.tls,
            reverse_lookup=(
                (lambda ip: confirmed_name(resolver, ip)) if settings.server.reverse_dns else None
            ),
            record_lines=self.recorder.session_lines if self.recorder is not None else None,
            stages=self.intake.session,
        )
        self.smtp = SmtpServer(self.context)
        self._flusher: asyncio.Task[None] | None = None
        self._key_checker: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self.stop_slack = STOP_SLACK
        self._stop_phase = ""

    def _pipeline(self) -> Pipeline:
        return build_pipeline(
            self.settings,
            self._filters,
            checks=self._inbound_checks(),
            signing=self._signing(),
            probe=self._probe_filter(),
            log=self.log,
        )

    def _probe_filter(self) -> InboundProbe:
        settings = self.settings
        access = AccessPolicy(
            settings.policy,
            hostname=settings.server.hostname,
            local_domains=settings.server.local_domains,
        )
        return InboundProbe(
            store=self.probes,
            dns=self.mail_dns,
            hostname=settings.server.hostname,
            zones=access.zones,
        )

    def _build_web(self, settings: Settings) -> None:
        """The HTTP service (web.listen = [] builds none): its users, event feed and app."""
        self.web: WebService | None = None
        self.web_users: WebUsers | None = None
        self.web_hub: EventHub | None = None
        if not settings.web.listen:
            return
        self.web_users = WebUsers(settings.server.data_dir / WEB_FILE)
        self.web_hub = EventHub(buffer=settings.web.event_buffer)
        self.log.subscribe(self.web_hub.publish)
        maildir = self.maildir
        context = WebContext(
            settings=settings,
            accounts=self.accounts,
            users=self.web_users,
            hub=self.web_hub,
            log=self.log,
            usage=lambda domain, local, quota: maildir.usage(domain, local, quota).bytes,
            router=self.router,
            secure_cookies=settings.web.tls,
            metrics=metrics_app(self.metrics.registry) if self.metrics is not None else None,
        )
        self.web = WebService(build_app(context), settings.web.listen)

    def _web_admin(self) -> None:
        """At the first start, the admin user: its password from web.admin_password_file,
        or a random one printed once (never into the event log)."""
        users = self.web_users
        if users is None or users.has_users():
            return
        path = self.settings.web.admin_password_file
        if path is not None:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise WebUserError(f"web.admin_password_file {path}: {error.strerror}") from None
            except UnicodeDecodeError:
                raise WebUserError(f"web.admin_password_file {path}: not UTF-8 text") from None
            if not lines or not lines[0]:
                raise WebUserError(f"web.admin_password_file {path}: the first line is empty")
            users.set_password(ADMIN, lines[0])
            return
        password = secrets.token_urlsafe(12)
        users.set_password(ADMIN, password)
        print(
            f"hato: web console: log in as {ADMIN} with the password {password}"
            " (shown only now; change it with hato web passwd)",
            file=sys.stderr,
            flush=True,
        )

    async def _start_web(self) -> tuple[str, ...]:
        if self.web is None or self.web_hub is None:
            return ()
        self._web_admin()
        self.web_hub.bind(asyncio.get_running_loop())
        web = self.settings.web
        context = self.tls.submission_context if web.tls and self.tls is not None else None
        await self.web.start(context)
        listening = tuple(_address(host, port) for host, port in self.web.bound)
        scheme = "https" if context is not None else "http"
        self.log.emit(WebStarted(urls=tuple(f"{scheme}://{a}/" for a in listening)))
        exposed = beyond_loopback(web.listen)
        if exposed and context is None:
            self.log.emit(WebUnencrypted(listen=tuple(exposed)))
        return listening

    def _inbound_checks(self) -> InboundChecks | None:
        settings = self.settings
        if not settings.mailauth.check:
            return None
        keys = self.dkim_keys
        return InboundChecks(
            hostname=settings.server.hostname,
            dns=self.mail_dns,
            settings=settings.mailauth,
            trusted_networks=_networks(settings.relay.trusted_networks),
            access=AccessPolicy(
                settings.policy,
                hostname=settings.server.hostname,
                local_domains=settings.server.local_domains,
            ),
            forwarded_to=self._forwarded_to,
            sealing_keys=lambda domain: keys.signing_keys(
                domain, include_contradicted=settings.dkim.sign_contradicted
            ),
            log=self.log,
        )

    def _signing(self) -> DkimSigning | None:
        settings = self.settings
        if not settings.dkim.sign:
            return None
        keys = self.dkim_keys
        return DkimSigning(
            signing_keys=lambda domain: keys.signing_keys(
                domain, include_contradicted=settings.dkim.sign_contradicted
            ),
            is_local_domain=self.router.is_local_domain,
            trusted_networks=_networks(settings.relay.trusted_networks),
            expiry=settings.dkim.expiry,
        )

    def _forwarded_to(self, envelope: Envelope) -> str | None:
        """The domain of the first recipient that an alias forwards to a remote address."""
        for recipient in envelope.recipients:
            domain = recipient.address.rpartition("@")[2]
            if self.router.is_local_domain(domain) and self.router.expand(recipient.address).remote:
                return domain.lower()
        return None

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The (host, port) pairs actually listened on (port 0 resolved)."""
        return self.smtp.bound

    @property
    def all_bound(self) -> list[tuple[str, int]]:
        """Every SMTP listener: port 25 style, implicit TLS, submission."""
        return [*self.smtp.bound, *self.smtp.bound_tls, *self.smtp.bound_submission]

    def _load_tls(self) -> ServerTls | None:
        """The certificate, when anything offers TLS; TlsError names the setting at fault.

        Loaded while the server is built, so the context the sessions share is complete
        from the start; SIGHUP reloads it in place (``ServerTls.reload``)."""
        settings = self.settings
        server = settings.server
        web = bool(settings.web.tls and settings.web.listen)
        if not (
            settings.tls.starttls or server.implicit_tls_listen or server.submission_listen or web
        ):
            return None
        return ServerTls(settings.tls, hostname=server.hostname, data_dir=server.data_dir)

    def _tls_loaded(self) -> None:
        assert self.tls is not None
        info = self.tls.info
        self.log.emit(
            TlsReloaded(
                certificate=str(info.path),
                self_signed=info.self_signed,
                not_after=info.not_after.isoformat(),
            )
        )

    def reload_tls(self) -> None:
        """SIGHUP: load the certificate again for new handshakes; keep the old one on error."""
        if self.tls is None:
            return
        try:
            self.tls.reload()
        except TlsError as error:
            self.log.emit(TlsReloadFailed(error=str(error)))
        else:
            self._tls_loaded()
        self.log.flush()

    def reload(self, load: Callable[[], Settings]) -> bool:
        """SIGHUP: read the configuration again and apply what can change live, for new
        sessions (a session in progress keeps the rules it began with); report what takes
        a restart. A file in error is refused whole and the settings in force stay."""
        try:
            new = load()
        except Exception as error:  # ConfigError, and anything else reading the file raised
            self.log.emit(ConfigReloadFailed(error=str(error)))
            self.log.flush()
            return False
        changed = changed_keys(self.settings, new)
        live = tuple(key for key in changed if key.startswith(LIVE_KEYS))
        restart = tuple(key for key in changed if key not in live)
        settings = with_keys(self.settings, new, live)
        # The certificate files are read again even when their paths did not change: a
        # renewal replaces them in place.
        if not self._reload_certificate(settings):
            return False
        self.settings = settings
        self.log.set_level(str(settings.log.level))
        self.context.checks.reload(settings)
        self.intake.pipeline = self._pipeline()
        if self._remote is not None:
            relay = settings.relay
            self._remote.router = self._next_hops(settings)
            auth = (relay.smarthost_username, relay.smarthost_password)
            self._remote.smarthost_auth = auth if relay.smarthost_username else None
        for hook in self.on_reload:
            hook(settings)
        self._record()  # the other commands read trusted networks and domains from it
        self.log.emit(ConfigReloaded(applied=live, restart_needed=restart))
        if restart:
            self.log.emit(ConfigRestartNeeded(keys=restart))
        self.log.flush()
        return True

    def _reload_certificate(self, settings: Settings) -> bool:
        tls = self.tls
        if tls is None:
            return True
        before = tls.settings
        tls.settings = settings.tls
        try:
            tls.reload()
        except TlsError as error:
            tls.settings = before
            self.log.emit(ConfigReloadFailed(error=str(error)))
            self.log.flush()
            return False
        self._tls_loaded()
        return True

    async def start(self, inherited: Mapping[str, Sequence[socket.socket]] | None = None) -> None:
        """``inherited``: listening sockets by kind (``smtp``, ``submission``,
        ``implicit_tls``), from systemd or bound before giving up root."""
        if self.recorder is not None:
            self.recorder.start()
        if self.tls is not None:
            self._tls_loaded()
        report = self.spool.open()
        self.log.emit(
            SpoolRecovered(
                queued=report.queued,
                orphans_removed=len(report.orphans_removed),
                broken=tuple(report.broken),
            )
        )
        self.queue = self._queue_manager()
        await self.queue.start()
        try:
            await self.drops.start()
            self._start_metrics()
            server = self.settings.server
            await self.smtp.start(
                server.listen,
                server.implicit_tls_listen,
                server.submission_listen,
                inherited=inherited,
            )
        except OSError:
            if self._metrics_listener is not None:
                self._metrics_listener.stop()
            await self.drops.stop()
            await self.queue.stop()
            self.spool.close()
            raise
        try:
            web = await self._start_web()
        except (OSError, WebUserError):
            await self.smtp.stop(grace=0, reason="the HTTP service cannot start")
            await self.drops.stop()
            await self.queue.stop()
            self.spool.close()
            raise
        self._flusher = asyncio.ensure_future(self._flush_log())
        if self.settings.dkim.sign:
            self._key_checker = asyncio.ensure_future(self._check_dkim_keys())
        self._record()
        self.log.emit(
            ServerStarted(
                hostname=self.settings.server.hostname,
                version=__version__,
                listen=tuple(_address(h, p) for h, p in self.bound),
                implicit_tls=tuple(_address(h, p) for h, p in self.smtp.bound_tls),
                submission=tuple(_address(h, p) for h, p in self.smtp.bound_submission),
                web=web,
                data_dir=str(self.settings.server.data_dir),
            )
        )
        self.log.flush()

    def _start_metrics(self) -> None:
        """``[metrics] listen``: /metrics on sockets of its own (the HTTP service mounts
        ``metrics.metrics_app(hato.metrics.registry)`` as well)."""
        listen = self.settings.metrics.listen
        if self.metrics is None or not listen:
            return
        listener = MetricsListener(self.metrics.registry)
        listener.start([(a.host, a.port) for a in listen])
        self._metrics_listener = listener
        self.log.emit(MetricsListening(listen=tuple(_address(h, p) for h, p in listener.bound)))

    def _queue_summary(self) -> QueueSummary | None:
        # On a scrape's thread; QueueState.summary has its own connection and lock.
        return self.queue.state.summary() if self.queue is not None else None

    def _on_attempt(self) -> Callable[[Attempt], None] | None:
        """Who hears of each remote delivery attempt: the flight recorder, the metrics."""
        recorder, metrics = self.recorder, self.metrics
        if recorder is None or metrics is None:
            one = recorder or metrics
            return one.attempt if one is not None else None

        def both(attempt: Attempt) -> None:
            recorder.attempt(attempt)
            metrics.attempt(attempt)

        return both

    def _record(self) -> None:
        """What this server uses, for the other commands (see config.ServerRecord)."""
        server = self.settings.server
        bound = [*self.bound, *self.smtp.bound_tls, *self.smtp.bound_submission]
        record = ServerRecord(
            pid=os.getpid(),
            started=time.time(),
            version=__version__,
            hostname=server.hostname,
            local_domains=server.local_domains,
            trusted_networks=self.settings.relay.trusted_networks,
            listening=tuple(_address(host, port) for host, port in bound),
        )
        write_server_record(server.data_dir, record)

    def _userdb(self) -> DovecotUserdb | None:
        accounts = self.settings.accounts
        if accounts.userdb is None:
            return None
        return DovecotUserdb(accounts.userdb, timeout=accounts.userdb_timeout)

    def _authenticator(self) -> Authenticator:
        """AUTH against the store, or Dovecot's auth service offering its own mechanisms."""
        settings = self.settings
        auth = settings.auth
        if auth.backend is None:
            return Authenticator(
                self.accounts, auth, hostname=settings.server.hostname, log=self.log
            )
        passwords = DovecotPasswords(auth.backend, timeout=auth.backend_timeout)
        try:
            offered = passwords.mechanisms()
        except DovecotUnavailable as error:
            # Dovecot may start after us: offer what is configured, and each AUTH asks it.
            self.log.emit(InternalError(where="auth.backend", error=str(error)))
            offered = auth.mechanisms
        mechanisms = tuple(m for m in offered if m in auth.mechanisms)
        return Authenticator(
            self.accounts,
            auth,
            hostname=settings.server.hostname,
            log=self.log,
            mechanisms=mechanisms,
            by_client=passwords,
        )

    def _queue_manager(self) -> QueueManager:
        settings = self.settings
        queue, relay = settings.queue, settings.relay
        auth = (relay.smarthost_username, relay.smarthost_password)
        smtp = SmtpAgent(
            self._next_hops(settings),
            local_hostname=settings.server.hostname,
            connect_timeout=relay.connect_timeout,
            smarthost_auth=auth if relay.smarthost_username else None,
            session_reuse=relay.session_reuse,
            on_attempt=self._on_attempt(),
        )
        lmtp_domains = {t.domain: t.lmtp for t in relay.transports if t.lmtp is not None}
        remote: RemoteAgent = smtp
        if lmtp_domains:
            remote = TransportAgent(smtp, self._lmtp_agent(lmtp_domains))
        mailbox_lmtp = None
        if settings.accounts.delivery is not None:
            mailbox_lmtp = self._lmtp_agent({}, default=settings.accounts.delivery)
        self._remote = smtp
        return QueueManager(
            state=QueueState(settings.server.data_dir),
            router=self.router,
            maildir=self.maildir,
            remote=remote,
            submit=self.submit,
            retry=RetryPolicy(
                initial=queue.retry_initial, maximum=queue.retry_max, lifetime=queue.lifetime
            ),
            log=self.log,
            hostname=settings.server.hostname,
            dsn=settings.dsn,
            trusted_networks=relay.trusted_networks,
            concurrency=queue.concurrency,
            per_destination=relay.per_destination,
            rewrite_forwarded_sender=self.srs.forward if self.srs is not None else None,
            mailbox_lmtp=mailbox_lmtp,
        )

    def _lmtp_agent(
        self, destinations: dict[str, LmtpTarget], default: LmtpTarget | None = None
    ) -> LmtpAgent:
        settings = self.settings
        return LmtpAgent(
            local_hostname=settings.server.hostname,
            destinations=destinations,
            default=default,
            connect_timeout=settings.relay.connect_timeout,
            on_attempt=self._on_attempt(),
        )

    def _next_hops(self, settings: Settings) -> NextHopRouter:
        relay = settings.relay
        # An MX that is this very server (its name, or an address it listens on at the port
        # mail exchangers are reached on) must not be used: RFC 5321 5.1.
        own_addresses = [
            address.host
            for address in settings.server.listen
            if address.port == relay.port and not ipaddress.ip_address(address.host).is_unspecified
        ]
        return NextHopRouter.from_settings(
            relay,
            self.resolver,
            is_local_host=local_host_matcher([settings.server.hostname], own_addresses),
        )

    def _queued(self, queue_id: str) -> None:
        if self.queue is not None:
            self.queue.notify(queue_id)

    async def _deliver_in_data(
        self,
        queue_id: str,
        envelope: Envelope,
        source: MessageSource,
        announce: Callable[[], None],
    ) -> bool:
        # Before the queue has started (a report written during start) nothing is local yet.
        if self.queue is None:
            return False
        return await self.queue.deliver_in_data(queue_id, envelope, source, announce)

    async def submit(self, envelope: Envelope, data: bytes) -> str:
        """Messages Hato writes itself (delivery reports): through the intake like any
        other, durable, then queued."""
        message = self.intake.open(envelope, Origin.REPORT)
        try:
            message.write(data)
        except SpoolError:
            message.abort()
            raise
        outcome = await message.finish()
        if isinstance(outcome, Refusal):
            raise SpoolError(f"report not queued: {outcome.reply} ({outcome.reason})")
        return outcome.queue_id

    async def stop(self, reason: str = "stop requested") -> None:
        """Stop serving and close every store, in order; never raises, never hangs silently.

        Each step runs even when an earlier one failed (the failure is an ``internal_error``
        event), and the stores are closed in threads of their own, so a busy default
        executor cannot hold the shutdown. When the whole takes longer than the grace period
        plus ``STOP_SLACK``, the step it waits on and the tasks still pending are reported
        (an event, so the administrator sees what a slow stop waits for).
        """
        if self._stopped.is_set() or self._stopping:
            return
        self._stopping = True
        watchdog = asyncio.ensure_future(self._stop_watchdog())
        cut = 0
        try:
            if self.web_hub is not None:
                self.web_hub.close()  # ends the event streams, so the HTTP service stops at once
            if self.web is not None:
                await self._stop_step("web", self.web.stop())
            grace = self.settings.server.shutdown_grace
            cut = await self._stop_step("smtp", self.smtp.stop(grace=grace, reason=reason)) or 0
            await self._stop_step("drops", self.drops.stop())
            if self._metrics_listener is not None:
                await self._stop_step("metrics", _own_thread(self._metrics_listener.stop))
            if self.queue is not None:
                await self._stop_step("queue", self.queue.stop())
                await self._stop_step("queue state", _own_thread(self.queue.state.close))
            await self._stop_step("spool", _own_thread(self.spool.close))
            await self._stop_step("accounts", _own_thread(self.accounts.close))
            if self.web_users is not None:
                await self._stop_step("web users", _own_thread(self.web_users.close))
            for task in (self._flusher, self._key_checker):
                if task is not None:
                    task.cancel()
            if self.recorder is not None:
                await self._stop_step("flight recorder", _own_thread(self.recorder.close))
        finally:
            watchdog.cancel()
            self.log.emit(ServerStopped(interrupted_sessions=cut))
            self.log.flush()
            self.log.close()
            self.lock.release()
            self._stopped.set()

    async def _stop_step(self, step: str, work: Awaitable[T]) -> T | None:
        self._stop_phase = step
        try:
            return await work
        except Exception as error:  # a failing step must not keep the others from running
            self.log.emit(InternalError(where=f"shutdown: {step}", error=repr(error)))
            return None

    async def _stop_watchdog(self) -> None:
        limit = self.settings.server.shutdown_grace + self.stop_slack
        await asyncio.sleep(limit)
        current = asyncio.current_task()
        pending = [_task_line(task) for task in asyncio.all_tasks() if task is not current]
        self.log.emit(
            InternalError(
                where="shutdown",
                error=f"still waiting for {self._stop_phase} after {limit:.0f} s; "
                f"pending: {'; '.join(sorted(pending)) or 'nothing'}",
            )
        )
        self.log.flush()

    async def _check_dkim_keys(self) -> None:
        """Each signing key's published record, at start and then every
        ``DKIM_CHECK_INTERVAL``: a key DNS contradicts is no longer signed with (unless
        ``dkim.sign_contradicted``), and the check is recorded as ``hato dkim check`` does."""
        while True:
            try:
                for event in await asyncio.to_thread(self._check_keys_once):
                    self.log.emit(event)
            except Exception as error:  # a damaged key store must not stop the server
                self.log.emit(InternalError(where="dkim", error=repr(error)))
            await asyncio.sleep(DKIM_CHECK_INTERVAL)

    def _check_keys_once(self) -> list[DkimKeyChecked]:
        store, events = self.dkim_keys, []
        for key in store.keys(domain=None):
            if key.state not in ("active", "pending"):
                continue
            check = check_published(self.mail_dns.for_message(), key)
            store.record_check(key.domain, key.selector, check)
            if check.state != "match" and key.state == "active":
                signing = check.state != "mismatch" or self.settings.dkim.sign_contradicted
                events.append(
                    DkimKeyChecked(
                        domain=key.domain,
                        selector=key.selector,
                        state=check.state,
                        detail=check.detail,
                        signing=signing,
                    )
                )
        return events

    async def _flush_log(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_INTERVAL)
            self.log.flush()


def _task_line(task: asyncio.Task[Any]) -> str:
    """One pending task: the chain of coroutines it waits in, outermost first."""
    links: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(links) < 20:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            links.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " > ".join(links) or repr(task.get_coro())


async def _own_thread(work: Callable[[], object]) -> None:
    """Run ``work`` in a new thread: closing a store must not queue behind other threads."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        try:
            work()
        except BaseException as error:
            loop.call_soon_threadsafe(settle, error)
        else:
            loop.call_soon_threadsafe(settle, None)

    threading.Thread(target=run, name="hato-stop", daemon=True).start()
    await done


def _networks(texts: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(text, strict=False) for text in texts]


def _address(host: str, port: int) -> str:
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def install_event_loop_policy() -> str:
    """Use uvloop when it is installed (the hot path is asyncio.Protocol based)."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def _listeners(settings: Settings) -> dict[str, list[socket.socket]]:
    """The listening sockets: systemd's (socket activation), and every listener not
    given there bound now, before root is given up (ports below 1024)."""
    found = inherited_sockets()
    who = run_as(settings.server.user, settings.server.group)
    if who is None:
        return found
    server = settings.server
    configured = (
        ("smtp", server.listen),
        ("submission", server.submission_listen),
        ("implicit_tls", server.implicit_tls_listen),
    )
    try:
        for kind, addresses in configured:
            if kind not in found:
                found[kind] = [bind(address) for address in addresses]
        own_data_dir(server.data_dir, who)
        drop_privileges(who)
    except BaseException:
        for sock in (sock for sockets in found.values() for sock in sockets):
            sock.close()
        raise
    return found


async def _serve(settings: Settings, reload: Callable[[], Settings] | None = None) -> None:
    notifier = Notifier.from_environment()
    inherited = _listeners(settings)
    hato = Hato(settings)
    loop = asyncio.get_running_loop()
    # Installed before the start, so a SIGTERM during it is a clean stop once started
    # (not the default action, which would end the process mid-start).
    requested: list[str] = []
    stop_requested = asyncio.Event()

    def on_signal(name: str) -> None:
        requested.append(name)
        stop_requested.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig.name)
    if notifier is not None:
        notifier.status("starting")
    await hato.start(inherited)
    status = f"serving SMTP on {', '.join(_address(h, p) for h, p in hato.all_bound)}"

    def on_hangup() -> None:
        if reload is None:
            hato.reload_tls()
            return
        if notifier is not None:
            notifier.reloading()
        hato.reload(reload)
        if notifier is not None:
            notifier.ready(status)

    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    pings: asyncio.Task[None] | None = None
    if notifier is not None:
        notifier.ready(status)
        if notifier.watchdog_interval is not None:
            pings = asyncio.ensure_future(_watchdog(notifier, notifier.watchdog_interval))
    await stop_requested.wait()
    if notifier is not None:
        notifier.stopping(f"stopping (signal {requested[0]})")
    if pings is not None:
        pings.cancel()
    await hato.stop(f"signal {requested[0]}")


async def _watchdog(notifier: Notifier, interval: float) -> None:
    """WATCHDOG=1 from the event loop itself: a loop that hangs stops the pings."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


def run(settings: Settings, *, reload: Callable[[], Settings] | None = None) -> int:
    """Run Hato until SIGTERM or SIGINT; the exit status for ``hato serve``.

    ``reload``: what SIGHUP reads the settings again with (None: SIGHUP reloads only the
    TLS certificate)."""
    install_event_loop_policy()
    try:
        asyncio.run(_serve(settings, reload))
    except DataDirInUse as error:
        print(f"hato: {error}", file=sys.stderr)
        return EX_TEMPFAIL
    except (
        OSError,
        TlsError,
        SpoolError,
        AccountError,
        WebUserError,
        PrivilegeError,
        ActivationError,
    ) as error:
        print(f"hato: cannot start: {error}", file=sys.stderr)
        return 1
    return 0
