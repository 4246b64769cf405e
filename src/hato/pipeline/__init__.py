"""The message pipeline: the intake every message passes, and its ordered filters.

Between the final dot (or ``BDAT LAST``) and the durable commit, a message passes the
filters of its way in (``Origin``), in the order ``app.py`` gives them. A filter sees the
envelope, the client (IP, HELO, TLS, AUTH: on the envelope), the parsed header section and
a reader over the message, and says accept (with fields to add), reject, defer or
quarantine. Nothing is acknowledged before every copy is durable.

A new filter is one file: a class with ``name``, ``stages`` and the stage methods of
:class:`MessageFilter`, and a ``Step`` for it in ``app.py``.
"""

from hato.pipeline._builtin import (
    ANNOTATION_FULL_NAME,
    ANNOTATION_PICKUP,
    ANNOTATION_SENDER_SET,
    ANNOTATION_USER,
    LocalFields,
    ReceivedField,
    SubmissionFields,
    received_field,
)
from hato.pipeline._filter import (
    ACCEPT,
    Action,
    Header,
    Message,
    MessageFilter,
    Stage,
    Verdict,
    parse_header,
)
from hato.pipeline._intake import MAX_HEADER_READ, DeliverInData, PipelineIntake
from hato.pipeline._mailauth import DkimSigning, InboundChecks
from hato.pipeline._pipeline import ON_ERROR, Pipeline, Step
from hato.pipeline._setup import build_pipeline

__all__ = [
    "ACCEPT",
    "ANNOTATION_FULL_NAME",
    "ANNOTATION_PICKUP",
    "ANNOTATION_SENDER_SET",
    "ANNOTATION_USER",
    "MAX_HEADER_READ",
    "ON_ERROR",
    "Action",
    "DeliverInData",
    "DkimSigning",
    "Header",
    "InboundChecks",
    "LocalFields",
    "Message",
    "MessageFilter",
    "Pipeline",
    "PipelineIntake",
    "ReceivedField",
    "Stage",
    "Step",
    "SubmissionFields",
    "Verdict",
    "build_pipeline",
    "parse_header",
    "received_field",
]
