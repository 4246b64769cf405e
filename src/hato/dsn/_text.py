"""The human-readable part of a report: what happened, in words a non-expert can act on."""

from __future__ import annotations

import re
import textwrap
import time

from ._fields import one_line
from ._model import Action, RecipientReport, Report

__all__ = ["SUBJECTS", "human_text"]

SUBJECTS = {
    Action.FAILED: "Undelivered Mail Returned to Sender",
    Action.DELAYED: "Delayed Mail (still being retried)",
    Action.DELIVERED: "Successful Mail Delivery Report",
    Action.RELAYED: "Relayed Mail Report",
    Action.EXPANDED: "Expanded Mail Report",
}

_INTRO = {
    Action.FAILED: (
        "Your message could not be delivered to the recipients listed below. The mail"
        " system has given up and will not try again."
    ),
    Action.DELAYED: (
        "Your message has not been delivered yet to the recipients listed below. This is"
        " only a warning: the mail system is still trying, and you do not need to send"
        " the message again."
    ),
    Action.DELIVERED: "Your message was delivered to the recipients listed below.",
    Action.RELAYED: (
        "Your message was passed on to the mail systems of the recipients listed below."
        " Those systems do not send delivery reports, so this is the last report you will"
        " get about these recipients."
    ),
    Action.EXPANDED: (
        "Your message was delivered to the lists or aliases below, which passed it on to"
        " their own recipients. You will get no further reports about them from here."
    ),
}

_RETURNED = {
    "full": "A copy of your message is attached below.",
    "headers": (
        "The header section of your message (sender, recipients, subject, date) is"
        " attached below, so you can tell which message this report is about."
    ),
    "none": "",
}

# RFC 3463 section 3, "subject.detail": what a status means, and what the sender can do.
_MEANING: dict[str, tuple[str, str]] = {
    "1.1": (
        "the address does not exist at the receiving mail system",
        "Check the address for typing mistakes. If it is right, the person may have"
        " changed address: ask them for the new one another way.",
    ),
    "1.2": (
        "the domain (the part after the @) does not exist or does not receive mail",
        "Check the part after the @ for typing mistakes.",
    ),
    "1.3": (
        "the address is not written correctly",
        "Check the address for typing mistakes, stray spaces or missing parts.",
    ),
    "1.10": (
        "the recipient's domain says that it receives no mail at all",
        "Check the address: the domain exists but accepts no mail.",
    ),
    "2.1": (
        "the recipient's mailbox is disabled",
        "Reach the recipient another way, or ask whether they have a new address.",
    ),
    "2.2": (
        "the recipient's mailbox is full",
        "Ask the recipient to make room in their mailbox, then send the message again.",
    ),
    "2.3": (
        "the message is larger than the recipient's mailbox accepts",
        "Send a smaller message: share large attachments through a file-sharing link.",
    ),
    "3.4": (
        "the message is larger than the receiving mail system accepts",
        "Send a smaller message: share large attachments through a file-sharing link.",
    ),
    "4.1": (
        "the recipient's mail server did not answer",
        "This is often temporary. If it lasts, the recipient's mail server may be down:"
        " tell the recipient another way.",
    ),
    "4.4": (
        "no mail server could be found for the recipient's domain",
        "Check the part after the @ for typing mistakes.",
    ),
    "4.6": (
        "the message went round in a loop between mail systems",
        "Forward this report to your mail administrator: a forwarding rule is probably"
        " sending mail back where it came from.",
    ),
    "4.7": (
        "the message could not be delivered in time and expired",
        "The recipient's mail system has been unreachable for days. Tell the recipient"
        " another way, or send the message again later.",
    ),
    "7.1": (
        "the receiving mail system refused the message because of its rules",
        "The server's answer above usually says why. If it mentions spam or blocking,"
        " forward this report to your mail administrator.",
    ),
}

# RFC 3463 section 3: the subject digit alone, when the detail is not in the table above.
_SUBJECT = {
    "1": "there is a problem with the address",
    "2": "there is a problem with the recipient's mailbox",
    "3": "there is a problem with the receiving mail system",
    "4": "there is a network or routing problem",
    "5": "the mail servers could not understand each other",
    "6": "there is a problem with the message's content",
    "7": "the message was refused for security or policy reasons",
}

_GENERIC_HELP = (
    "If you do not know what to do, forward this whole report to your mail administrator."
)
_WIDTH = 76
_INDENT = "    "
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


def _human_date(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def _wrap(text: str, indent: str = "") -> list[str]:
    """Wrap one paragraph; words longer than a line are cut so no line passes the width."""
    return textwrap.wrap(
        one_line(text),
        width=_WIDTH,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


def _meaning(status: str) -> tuple[str, str | None]:
    _, subject, detail = status.split(".")
    if f"{subject}.{detail}" in _MEANING:
        return _MEANING[f"{subject}.{detail}"]
    return _SUBJECT.get(subject, "the mail system gave no further reason"), None


def _recipient(recipient: RecipientReport) -> list[str]:
    lines = _wrap(f"<{recipient.final_recipient}>")
    if recipient.original_recipient is not None:
        original = recipient.original_recipient.partition(";")[2].strip()
        if original != recipient.final_recipient:
            lines += _wrap(f"(originally addressed to <{original}>)", _INDENT)
    if recipient.action in (Action.FAILED, Action.DELAYED):
        meaning, advice = _meaning(recipient.status)
        lines += _wrap(f"What happened: {meaning} (status {recipient.status}).", _INDENT)
    else:
        advice = None
    if recipient.remote_reply is not None:
        server = recipient.remote_mta or "The receiving mail server"
        if recipient.remote_command is not None:
            # The decisive exchange, quoted as it went over the wire.
            lines += _wrap(f"Our mail system said to {server}:", _INDENT)
            lines += _wrap(recipient.remote_command, _INDENT * 2)
            lines += _wrap("and it answered:", _INDENT)
        else:
            lines += _wrap(f"{server} answered:", _INDENT)
        for reply_line in _LINE_BREAKS.split(recipient.remote_reply):
            lines += _wrap(reply_line, _INDENT * 2)
    elif recipient.remote_mta is not None:
        lines += _wrap(f"Handed over to {recipient.remote_mta}.", _INDENT)
    if recipient.detail is not None:
        lines += _wrap(f"Details: {recipient.detail}", _INDENT)
    if recipient.will_retry_until is not None:
        until = _human_date(recipient.will_retry_until)
        lines += _wrap(f"The mail system will keep trying until {until}.", _INDENT)
    if advice is not None:
        lines += _wrap(f"What to check: {advice}", _INDENT)
    return lines


def human_text(report: Report) -> str:
    """The report in plain words, wrapped at 76 characters, lines joined by ``\\n``."""
    lines = [*_wrap(f"This is the mail system at {report.reporting_mta}."), ""]
    lines += [*_wrap(_INTRO[report.action]), ""]
    for recipient in report.recipients:
        lines += [*_recipient(recipient), ""]
    if report.action in (Action.FAILED, Action.DELAYED):
        lines += [*_wrap(_GENERIC_HELP), ""]
    if _RETURNED[report.return_content]:
        lines += [*_wrap(_RETURNED[report.return_content]), ""]
    received = _human_date(report.arrival)
    lines += _wrap(
        f"Your message was received at {received}, queue ID {report.queue_id}. Your mail"
        " administrator can look up everything that happened to it by this queue ID."
    )
    return "\n".join(lines) + "\n"
