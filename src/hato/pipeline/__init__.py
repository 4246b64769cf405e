"""The message pipeline: the intake every message passes, and its ordered filters.

Between the final dot (or ``BDAT LAST``) and the durable commit, a message passes the
filters of its way in (``Origin``), in the order ``app.py`` gives them. A filter sees the
envelope, the client (IP, HELO, TLS, AUTH: on the envelope), the parsed header section and
a reader over the message, and says accept (with fields to add), reject, defer or
quarantine. Nothing is acknowledged before every copy is durable.

A new filter is one file: a class with ``name``, ``stages`` and the stage methods of
:class:`MessageFilter`, and a ``Step`` for it in ``app.py``. A filter that takes part
before the data too (a milter: connect, HELO, MAIL, RCPT) gives a :class:`FilterSession`
per SMTP session (:class:`SessionFilter`); its verdicts count at their stage. A verdict
may change the message (header edits, a new body) and its envelope (sender, recipients).
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
from hato.pipeline._edits import apply_edits, readdress
from hato.pipeline._filter import (
    ACCEPT,
    ENVELOPE_STAGES,
    Action,
    FilterSession,
    Header,
    HeaderEdit,
    Message,
    MessageFilter,
    SessionFilter,
    Stage,
    Verdict,
    parse_header,
)
from hato.pipeline._intake import MAX_HEADER_READ, DeliverInData, PipelineIntake
from hato.pipeline._mailauth import DkimSigning, InboundChecks
from hato.pipeline._milter import MilterFilter, MilterSession
from hato.pipeline._milter_client import MilterConnection, MilterUnavailable
from hato.pipeline._pipeline import LISTENERS, ON_ERROR, Pipeline, Step
from hato.pipeline._session import SessionRun
from hato.pipeline._setup import build_pipeline

__all__ = [
    "ACCEPT",
    "ANNOTATION_FULL_NAME",
    "ANNOTATION_PICKUP",
    "ANNOTATION_SENDER_SET",
    "ANNOTATION_USER",
    "ENVELOPE_STAGES",
    "LISTENERS",
    "MAX_HEADER_READ",
    "ON_ERROR",
    "Action",
    "DeliverInData",
    "DkimSigning",
    "FilterSession",
    "Header",
    "HeaderEdit",
    "InboundChecks",
    "LocalFields",
    "Message",
    "MessageFilter",
    "MilterConnection",
    "MilterFilter",
    "MilterSession",
    "MilterUnavailable",
    "Pipeline",
    "PipelineIntake",
    "ReceivedField",
    "SessionFilter",
    "SessionRun",
    "Stage",
    "Step",
    "SubmissionFields",
    "Verdict",
    "apply_edits",
    "build_pipeline",
    "parse_header",
    "readdress",
    "received_field",
]
