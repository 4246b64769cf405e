"""What every session of one server shares, built once in ``app.py`` and never changed:
settings, the event log and the collaborators a session calls. The runtime state (who is
connected, stopping, session IDs) is the server's (:class:`._registry.Sessions`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..config import Settings
from ..events import EventLog
from ..smtp import Limits
from ..spool import Intake, SessionStages
from ._auth import Authenticator
from ._checks import Checks
from ._submission import SubmissionRules
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerContext:
    settings: Settings
    log: EventLog
    # The engine's limits (limits_from(settings)).
    limits: Limits
    # Where every message goes at the end of its data: filters, then durable (spool.Intake).
    intake: Intake
    # The per-stage checks: limits, access rules, DNSBL, relay, recipients, quota.
    checks: Checks
    # AUTH before MAIL on submission; the authenticated user's own sender everywhere.
    submission: SubmissionRules
    # SMTP AUTH (None: no AUTH is offered anywhere).
    auth: Authenticator | None = None
    # The certificate for STARTTLS and the implicit TLS listeners (None: no TLS at all).
    tls: ServerTls | None = None
    # The client's forward-confirmed PTR name, for the Received header (None: unknown).
    reverse_lookup: Callable[[str], Awaitable[str | None]] | None = None
    # The flight recorder's intake for session lines: (session ID, [(C/S, text)], unix time).
    record_lines: Callable[[str, list[tuple[str, str]], float], None] | None = None
    # The filters' envelope stages for a session: (listener kind, session ID) -> stages,
    # or None where no filter takes part before the data (pipeline.PipelineIntake.session).
    stages: Callable[[str, str], SessionStages | None] | None = None

    @property
    def starttls(self) -> bool:
        """Whether plain sessions offer STARTTLS."""
        return self.tls is not None and self.settings.tls.starttls

    @property
    def hostname(self) -> str:
        return self.settings.server.hostname
