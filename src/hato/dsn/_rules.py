"""When a report is owed, what it returns, and whose reverse-path it travels with."""

from __future__ import annotations

from typing import Final

from ._model import Action, ReturnContent

__all__ = ["REPORT_REVERSE_PATH", "return_content", "should_report", "wants_report"]

# RFC 5321 section 4.5.5: a report goes out with the null reverse-path <>, so that a
# report that cannot be delivered is dropped instead of reported in turn.
REPORT_REVERSE_PATH: Final = ""

_NEVER = "NEVER"
_EVENTS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# RFC 3461 section 4.1: the NOTIFY keyword each action answers to.
_KEYWORD = {
    Action.FAILED: "FAILURE",
    Action.DELAYED: "DELAY",
    Action.DELIVERED: "SUCCESS",
    Action.RELAYED: "SUCCESS",
    Action.EXPANDED: "SUCCESS",
}


def wants_report(notify: tuple[str, ...], action: Action, *, delay_without_notify: bool) -> bool:
    """Whether a recipient's NOTIFY asks for a report of ``action`` (RFC 3461 section 4.1).

    ``notify`` is the recipient's NOTIFY as stored: ``()`` when the sender gave none,
    ``("NEVER",)``, or some of SUCCESS, FAILURE and DELAY. Without NOTIFY the sender gets
    failures, delays only when ``delay_without_notify`` (the RFC leaves that to us), and
    never success.
    """
    keywords = {word.upper() for word in notify}
    if keywords == {_NEVER}:
        return False
    if not keywords <= _EVENTS:
        raise ValueError(f"invalid NOTIFY {','.join(notify)!r}: NEVER alone, or of {_EVENTS}")
    if not keywords:
        return action is Action.FAILED or (action is Action.DELAYED and delay_without_notify)
    return _KEYWORD[action] in keywords


def should_report(
    reverse_path: str, notify: tuple[str, ...], action: Action, *, delay_without_notify: bool
) -> bool:
    """Whether to build a report: the sender asked for it and has somewhere to receive it.

    A null reverse-path (``""``) never gets a report (RFC 5321 section 4.5.5): it is
    typically a report itself, and answering it could start a loop.
    """
    if reverse_path == "":
        return False
    return wants_report(notify, action, delay_without_notify=delay_without_notify)


def return_content(
    ret: str | None,
    size: int,
    *,
    full_limit: int,
    action: Action = Action.FAILED,
    outside_full_limit: int | None = None,
) -> ReturnContent:
    """How much of the original message a report returns (RFC 3461 section 4.3).

    RET applies to failure reports: RET=FULL returns the whole message, RET=HDRS its header
    section, and without RET the whole message when it is at most ``full_limit`` bytes.
    Other reports (delayed, delivered, ...) tell the sender about a message that is still
    on its way or already arrived, so they return the header section only, to identify it.

    ``outside_full_limit`` is set for a message from an outside client (neither
    authenticated nor trusted), whose sender may be forged: the report would then reflect
    the message to a bystander (backscatter), so it returns the header section only, unless
    the message came with RET=FULL and is at most that many bytes.
    """
    if ret is not None and ret.upper() not in ("FULL", "HDRS"):
        raise ValueError(f"invalid RET {ret!r}: FULL or HDRS")
    if action is not Action.FAILED:
        return "headers"
    if outside_full_limit is not None:
        wanted = ret is not None and ret.upper() == "FULL"
        return "full" if wanted and size <= outside_full_limit else "headers"
    if ret is None:
        return "full" if size <= full_limit else "headers"
    return "full" if ret.upper() == "FULL" else "headers"
