"""Delivery status notifications (layer 1): plain data in, a report message as bytes out.

What this package promises (RFC 3461, 3462/6522, 3464, 6533):

- It knows nothing of the queue. The caller decides, per recipient and per state reached
  in one delivery attempt, whether a report is owed (:func:`should_report`: NOTIFY, a
  null reverse-path never gets one) and how much of the message to return
  (:func:`return_content`: RET and size); it builds one :class:`Report` per action,
  since a report with mixed actions is refused.
- :func:`build_report` (or :func:`write_report`, which streams) writes a complete
  ``multipart/report; report-type=delivery-status`` message with CRLF line ends: a
  plain-words explanation, the machine-readable ``message/delivery-status`` (or
  ``message/global-delivery-status`` when an address is UTF-8), and the original message
  or its header section. Every line is at most 998 octets, and text from remote servers
  is made one line before it is written, so it can never add fields of its own.
- Reports go out with the null reverse-path (:data:`REPORT_REVERSE_PATH`, ``<>``) and
  the BODY and SMTPUTF8 parameters :func:`write_report` returns; the caller submits them
  through the spool like any other message.
"""

from ._build import ReportEncoding, build_report, write_report
from ._model import Action, RecipientReport, Report, ReturnContent
from ._original import HEADER_SECTION_LIMIT
from ._rules import REPORT_REVERSE_PATH, return_content, should_report, wants_report

__all__ = [
    "HEADER_SECTION_LIMIT",
    "REPORT_REVERSE_PATH",
    "Action",
    "RecipientReport",
    "Report",
    "ReportEncoding",
    "ReturnContent",
    "build_report",
    "return_content",
    "should_report",
    "wants_report",
    "write_report",
]
