"""The filters' order, as data in one place: which filter, for which ways in."""

from __future__ import annotations

from .. import __version__
from ..config import Settings
from ..spool import Origin
from ._builtin import LocalFields, ReceivedField, SubmissionFields
from ._filter import MessageFilter
from ._pipeline import Pipeline, Step

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
) -> Pipeline:
    """The built-in filters in order: the trace field, submission's fields (and local
    programs' fields: ``sendmail``, the pickup directory), the test
    addresses' analysis (``probe``: before the checks, which could refuse what it is to
    see), the checks of mail from outside (``checks``), ``extra`` (each for every way in
    but reports), and DKIM signing (``signing``) last, so the signature covers every
    field added before."""
    server, pipeline = settings.server, settings.pipeline
    timeout, on_error = pipeline.timeout, str(pipeline.on_error)

    def step(filter: MessageFilter, origins: frozenset[Origin]) -> Step:
        return Step(filter=filter, origins=origins, timeout=timeout, on_error=on_error)

    return Pipeline(
        [
            step(ReceivedField(hostname=server.hostname, version=__version__), _FROM_CLIENTS),
            step(SubmissionFields(hostname=server.hostname), frozenset({Origin.SUBMISSION})),
            step(LocalFields(hostname=server.hostname, version=__version__), _FROM_PROGRAMS),
            *([step(probe, _FROM_CLIENTS)] if probe is not None else []),
            *([step(checks, frozenset({Origin.SMTP}))] if checks is not None else []),
            *(step(f, _BUT_REPORTS) for f in extra),
            *([step(signing, _EVERY_WAY_IN)] if signing is not None else []),
        ]
    )
