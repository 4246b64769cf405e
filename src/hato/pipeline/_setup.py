"""The filters' order, as data in one place: which filter, for which ways in."""

from __future__ import annotations

from .. import __version__
from ..config import MilterSettings, Settings
from ..events import EventLog
from ..spool import Origin
from ._builtin import LocalFields, ReceivedField, SubmissionFields
from ._filter import MessageFilter
from ._milter import MilterFilter
from ._pipeline import LISTENERS, Pipeline, Step

__all__ = ["build_pipeline"]

_FROM_CLIENTS = frozenset({Origin.SMTP, Origin.SUBMISSION})
_FROM_PROGRAMS = frozenset({Origin.SENDMAIL, Origin.PICKUP})
_EVERY_WAY_IN = frozenset(Origin)
_BUT_REPORTS = _EVERY_WAY_IN - {Origin.REPORT}


def build_pipeline(
    settings: Settings,
    extra: tuple[MessageFilter, ...] = (),
    *,
    checks: MessageFilter | None = None,
    signing: MessageFilter | None = None,
    probe: MessageFilter | None = None,
    log: EventLog | None = None,
) -> Pipeline:
    """The built-in filters in order: the trace field, submission's fields (and local
    programs' fields: ``sendmail``, the pickup directory), the test
    addresses' analysis (``probe``: before the checks, which could refuse what it is to
    see), the checks of mail from outside (``checks``), the milters of
    ``pipeline.milters`` in their order (with ``log`` for their events), ``extra`` (each
    for every way in but reports), and DKIM signing (``signing``) last, so the signature
    covers every field added before (a milter's too)."""
    server, pipeline = settings.server, settings.pipeline
    timeout, on_error = pipeline.timeout, str(pipeline.on_error)

    def step(filter: MessageFilter, origins: frozenset[Origin]) -> Step:
        return Step(filter=filter, origins=origins, timeout=timeout, on_error=on_error)

    hostname = server.hostname
    milters = [_milter_step(m, hostname, log) for m in pipeline.milters] if log is not None else []
    return Pipeline(
        [
            step(ReceivedField(hostname=server.hostname, version=__version__), _FROM_CLIENTS),
            step(SubmissionFields(hostname=server.hostname), frozenset({Origin.SUBMISSION})),
            step(LocalFields(hostname=server.hostname, version=__version__), _FROM_PROGRAMS),
            *([step(probe, _FROM_CLIENTS)] if probe is not None else []),
            *([step(checks, frozenset({Origin.SMTP}))] if checks is not None else []),
            *milters,
            *(step(f, _BUT_REPORTS) for f in extra),
            *([step(signing, _EVERY_WAY_IN)] if signing is not None else []),
        ]
    )


def _milter_step(settings: MilterSettings, hostname: str, log: EventLog) -> Step:
    """A milter in its place: the ways in its listeners stand for, and a time limit that
    only its own timeouts would reach first (a safety net around a whole stage)."""
    listeners = frozenset(settings.listeners)
    origins = {
        Origin.SMTP: "smtp" in listeners,
        Origin.SUBMISSION: bool(listeners & {"submission", "implicit_tls"}),
        Origin.REPORT: "local" in listeners,
    }
    bound = settings.connect_timeout + settings.command_timeout * 4 + settings.message_timeout
    return Step(
        filter=MilterFilter(settings, hostname=hostname, log=log),
        origins=frozenset(origin for origin, wanted in origins.items() if wanted),
        timeout=bound,
        on_error=str(settings.default_action),
        listeners=listeners & frozenset(LISTENERS),
    )
