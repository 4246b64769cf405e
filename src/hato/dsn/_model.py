"""What a report says, as plain data: one report per state reached, one block per recipient."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Action", "RecipientReport", "Report", "ReturnContent"]

# RFC 3461 section 4.3 and RFC 6522: the whole message, its header section only, or nothing.
ReturnContent = Literal["full", "headers", "none"]
_RETURN_CONTENT = frozenset({"full", "headers", "none"})

# RFC 3463 section 2: status-code = class "." subject "." detail, each 1 to 3 digits.
_STATUS = re.compile(r"([245])\.(?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})")


class Action(enum.StrEnum):
    """RFC 3464 section 2.3.3: what the reporting MTA did with one recipient."""

    FAILED = "failed"  # given up: the message will never reach this recipient
    DELAYED = "delayed"  # not yet delivered, still being retried
    DELIVERED = "delivered"  # stored in the recipient's mailbox
    RELAYED = "relayed"  # passed on to a system that sends no reports of its own
    EXPANDED = "expanded"  # delivered to an alias or list that forwards it further

    @property
    def status_classes(self) -> str:
        """The status classes an action may carry (RFC 3464 section 2.3.4).

        FAILED may keep a 4.X.X code: a transient failure that became final when the
        message expired in the queue, reported with the last status seen.
        """
        return {"failed": "45", "delayed": "4"}.get(self.value, "2")


# Dates are written as RFC 5322 date-time, which has four-digit years: 1970 to 9999.
_LAST_TIMESTAMP = 253402300799.0


def _check_time(name: str, value: float | None) -> None:
    if value is not None and not 0 <= value <= _LAST_TIMESTAMP:
        raise ValueError(f"{name} must be a unix time between 1970 and 9999, not {value!r}")


def _check_text(name: str, value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError(f"{name} must not be empty; use None when there is nothing to say")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientReport:
    """One recipient's block in a report (RFC 3464 section 2.3).

    Addresses are bare (``user@example.org``, no ``<>``, no address type); the report adds
    ``rfc822;`` or, for a non-ASCII address, ``utf-8;`` (RFC 6533 section 3).
    """

    final_recipient: str  # the forward-path we tried to deliver to
    original_recipient: str | None  # ORCPT as given: "addr-type;address", xtext decoded
    action: Action
    status: str  # RFC 3463 code, e.g. "5.1.1"
    remote_mta: str | None = None  # host name of the server that answered, "mx.example.org"
    remote_reply: str | None = None  # that server's reply, "550 5.1.1 <x@y>: user unknown"
    remote_command: str | None = None  # what that reply answered, "RCPT TO:<x@y>"
    detail: str | None = None  # our own explanation in plain words, when no server answered
    last_attempt: float | None = None  # unix time of the last delivery attempt
    will_retry_until: float | None = None  # unix time we give up; DELAYED only

    def __post_init__(self) -> None:
        if not self.final_recipient.strip():
            raise ValueError("final_recipient must not be empty")
        match = _STATUS.fullmatch(self.status)
        if match is None:
            raise ValueError(f"not an RFC 3463 status code: {self.status!r}")
        # RFC 3464 section 2.3.4: the status must agree with the action.
        if match.group(1) not in self.action.status_classes:
            classes = " or ".join(f"{c}.X.X" for c in self.action.status_classes)
            raise ValueError(f"action {self.action} needs a {classes} status, not {self.status}")
        # RFC 3461 section 4.2: orcpt-parameter = "ORCPT=" addr-type ";" xtext
        if self.original_recipient is not None:
            addr_type, _, address = self.original_recipient.partition(";")
            if not addr_type.strip() or not address.strip():
                raise ValueError(f"ORCPT {self.original_recipient!r} is not addr-type;address")
        # RFC 3464 section 2.3.9: Will-Retry-Until is for delayed reports only.
        if self.will_retry_until is not None and self.action is not Action.DELAYED:
            raise ValueError("will_retry_until belongs to delayed reports only")
        for name in ("remote_mta", "remote_reply", "remote_command", "detail"):
            _check_text(name, getattr(self, name))
        _check_time("last_attempt", self.last_attempt)
        _check_time("will_retry_until", self.will_retry_until)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """One delivery status notification: what happened to some recipients of one message.

    All recipients share one action: a delivery attempt that ends with some recipients
    delivered and some failed yields two reports, as each state is reported once.
    """

    reporting_mta: str  # our host name
    queue_id: str  # the original message's queue ID
    original_sender: str  # the reverse-path the report goes to; never "" (null)
    envid: str | None  # ENVID as given, xtext decoded; None when the sender gave none
    arrival: float  # unix time the original message was queued
    recipients: tuple[RecipientReport, ...]
    return_content: ReturnContent

    def __post_init__(self) -> None:
        # RFC 5321 section 4.5.5: a message with a null reverse-path (a report itself,
        # typically) never gets a report, so reports can never loop.
        if not self.original_sender:
            raise ValueError("a null reverse-path never gets a report")
        if not self.reporting_mta.strip():
            raise ValueError("reporting_mta must not be empty")
        if not self.recipients:
            raise ValueError("a report needs at least one recipient")
        actions = {r.action for r in self.recipients}
        if len(actions) > 1:
            names = ", ".join(sorted(actions))
            raise ValueError(f"one report per action; got {names}: build one report for each")
        if self.return_content not in _RETURN_CONTENT:
            choice = self.return_content
            raise ValueError(f"return_content must be full, headers or none, not {choice!r}")
        _check_text("envid", self.envid)
        _check_time("arrival", self.arrival)

    @property
    def action(self) -> Action:
        return self.recipients[0].action
