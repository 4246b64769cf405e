"""The filters' order, as data in one place: which filter, for which ways in."""

from __future__ import annotations

from .. import __version__
from ..config import Settings
from ..spool import Origin
from ._builtin import ReceivedField, SubmissionFields
from ._filter import MessageFilter
from ._pipeline import Pipeline, Step

__all__ = ["build_pipeline"]

_FROM_CLIENTS = frozenset({Origin.SMTP, Origin.SUBMISSION})


def build_pipeline(settings: Settings, extra: tuple[MessageFilter, ...] = ()) -> Pipeline:
    """The built-in filters in order, then ``extra`` (each for every way in but reports)."""
    server, pipeline = settings.server, settings.pipeline
    timeout, on_error = pipeline.timeout, str(pipeline.on_error)

    def step(filter: MessageFilter, origins: frozenset[Origin]) -> Step:
        return Step(filter=filter, origins=origins, timeout=timeout, on_error=on_error)

    return Pipeline(
        [
            step(ReceivedField(hostname=server.hostname, version=__version__), _FROM_CLIENTS),
            step(SubmissionFields(hostname=server.hostname), frozenset({Origin.SUBMISSION})),
            *(step(f, _FROM_CLIENTS) for f in extra),
        ]
    )
