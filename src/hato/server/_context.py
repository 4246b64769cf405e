"""What every session of one server shares: settings, spool, event log, counters."""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..accounts import AccountStore
from ..config import Settings
from ..delivery import MaildirAgent
from ..events import EventLog
from ..policy import AccessPolicy, AuthLimiter, ClientLimits, RelayPolicy
from ..routing import LocalRouter
from ..smtp import Limits
from ..spool import Intake, Spool

if TYPE_CHECKING:
    from ._session import Session
    from ._tls import ServerTls

__all__ = ["ServerContext", "limits_from"]


def limits_from(settings: Settings) -> Limits:
    smtp = settings.smtp
    return Limits(
        max_message_size=smtp.max_message_size,
        max_command_line=smtp.max_command_line,
        max_text_line=smtp.max_text_line,
        max_recipients=smtp.max_recipients,
        max_errors=smtp.max_errors,
        junk_command_limit=smtp.junk_command_limit,
        bare_newline=smtp.bare_newline,
    )


@dataclass(slots=True, kw_only=True)
class ServerContext:
    settings: Settings
    spool: Spool
    log: EventLog
    router: LocalRouter
    maildir: MaildirAgent
    # Where every message goes at the end of its data: filters, then durable (spool.Intake).
    intake: Intake
    # The client's forward-confirmed PTR name, for the Received header (None: unknown).
    reverse_lookup: Callable[[str], Awaitable[str | None]] | None = None
    # The certificate for STARTTLS and the implicit TLS listeners (None: no TLS at all).
    tls: ServerTls | None = None
    # Whose passwords SMTP AUTH checks (None: no AUTH is offered anywhere).
    accounts: AccountStore | None = None
    # The A records of a name, for DNS blocklists (None: blocklist rules never match).
    dnsbl_lookup: Callable[[str], Awaitable[list[str]]] | None = None
    # The flight recorder's intake for session lines: (session ID, [(C/S, text)], unix time).
    record_lines: Callable[[str, list[tuple[str, str]], float], None] | None = None
    limits: Limits = field(init=False)
    relay: RelayPolicy = field(init=False)
    auth_limit: AuthLimiter = field(init=False)
    access: AccessPolicy = field(init=False)
    client_limits: ClientLimits = field(init=False)
    sessions: set[Session] = field(default_factory=set)
    stopping: bool = False
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _prefix: str = field(default_factory=lambda: os.urandom(2).hex())

    def __post_init__(self) -> None:
        self.limits = limits_from(self.settings)
        self.relay = RelayPolicy(self.settings.relay.trusted_networks)
        auth = self.settings.auth
        self.auth_limit = AuthLimiter(
            max_failures=auth.max_failures, window=auth.failure_window, ban_time=auth.ban_time
        )
        policy, server = self.settings.policy, self.settings.server
        self.access = AccessPolicy(
            policy, hostname=server.hostname, local_domains=server.local_domains
        )
        self.client_limits = ClientLimits(
            max_connections=policy.max_connections,
            connection_rate=policy.connection_rate,
            message_rate=policy.message_rate,
            recipient_rate=policy.recipient_rate,
            hostname=server.hostname,
        )

    @property
    def starttls(self) -> bool:
        """Whether plain sessions offer STARTTLS."""
        return self.tls is not None and self.settings.tls.starttls

    @property
    def hostname(self) -> str:
        return self.settings.server.hostname

    def new_session_id(self) -> str:
        return f"{self._prefix}{next(self._ids):06x}"
