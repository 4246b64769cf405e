"""When a report is owed and what it returns: RFC 3461 sections 4.1 and 4.3, cell by cell."""

from __future__ import annotations

import itertools

import pytest
from dsn_samples import recipient, report

from hato.dsn import (
    REPORT_REVERSE_PATH,
    Action,
    RecipientReport,
    return_content,
    should_report,
    wants_report,
)

F, DY, DV, R, E = (Action.FAILED, Action.DELAYED, Action.DELIVERED, Action.RELAYED, Action.EXPANDED)
SUCCESSES = {DV, R, E}

# Every NOTIFY value there is, and the actions it asks reports for (delay_without_notify off).
REPORTED = {
    (): {F},
    ("NEVER",): set(),
    ("SUCCESS",): SUCCESSES,
    ("FAILURE",): {F},
    ("DELAY",): {DY},
    ("SUCCESS", "FAILURE"): SUCCESSES | {F},
    ("SUCCESS", "DELAY"): SUCCESSES | {DY},
    ("FAILURE", "DELAY"): {F, DY},
    ("SUCCESS", "FAILURE", "DELAY"): SUCCESSES | {F, DY},
}


@pytest.mark.parametrize(("notify", "action"), list(itertools.product(REPORTED, Action)), ids=str)
@pytest.mark.parametrize("delay_without_notify", [False, True])
def test_wants_report_every_cell(
    notify: tuple[str, ...], action: Action, delay_without_notify: bool
) -> None:
    expected = action in REPORTED[notify]
    # The server's own choice applies only where the sender said nothing at all.
    if notify == () and action is DY:
        expected = delay_without_notify
    assert wants_report(notify, action, delay_without_notify=delay_without_notify) is expected


def test_notify_order_and_case_do_not_matter() -> None:
    assert wants_report(("delay", "Failure"), DY, delay_without_notify=False)
    assert not wants_report(("never",), F, delay_without_notify=True)


@pytest.mark.parametrize("notify", [("NEVER", "FAILURE"), ("SOMETIMES",), ("",)])
def test_invalid_notify_is_our_bug_and_refused(notify: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="NOTIFY"):
        wants_report(notify, F, delay_without_notify=False)


@pytest.mark.parametrize("action", list(Action))
def test_a_null_reverse_path_never_gets_a_report(action: Action) -> None:
    everything = ("SUCCESS", "FAILURE", "DELAY")
    assert not should_report("", everything, action, delay_without_notify=True)
    assert should_report("alice@example.com", everything, action, delay_without_notify=True)


def test_should_report_follows_notify_for_a_real_sender() -> None:
    assert should_report("a@example.com", (), F, delay_without_notify=False)
    assert not should_report("a@example.com", ("NEVER",), F, delay_without_notify=False)


def test_reports_travel_with_the_null_reverse_path() -> None:
    assert REPORT_REVERSE_PATH == ""


@pytest.mark.parametrize(
    ("ret", "size", "expected"),
    [
        ("FULL", 10_000_000, "full"),  # asked for: returned whatever its size
        ("full", 10_000_000, "full"),
        ("HDRS", 10, "headers"),
        ("hdrs", 10, "headers"),
        (None, 999, "full"),
        (None, 1000, "full"),  # the limit itself is still small enough
        (None, 1001, "headers"),
        (None, 0, "full"),
    ],
)
def test_return_content_for_failures(ret: str | None, size: int, expected: str) -> None:
    assert return_content(ret, size, full_limit=1000) == expected


@pytest.mark.parametrize(
    ("ret", "size", "expected"),
    [
        (None, 10, "headers"),  # without RET: never whole, however small
        ("HDRS", 10, "headers"),
        ("FULL", 100, "full"),
        ("full", 100, "full"),
        ("FULL", 101, "headers"),  # asked for, but too large to reflect to a bystander
    ],
)
def test_a_message_from_outside_returns_its_header_unless_small_and_ret_full(
    ret: str | None, size: int, expected: str
) -> None:
    assert return_content(ret, size, full_limit=1000, outside_full_limit=100) == expected


@pytest.mark.parametrize("action", [DY, DV, R, E])
@pytest.mark.parametrize("ret", ["FULL", "HDRS", None])
def test_other_reports_return_headers_only(action: Action, ret: str | None) -> None:
    assert return_content(ret, 10, full_limit=1000, action=action) == "headers"


def test_invalid_ret_is_refused() -> None:
    with pytest.raises(ValueError, match="RET"):
        return_content("BODY", 10, full_limit=1000)


# --- what a report may hold -----------------------------------------------------------


def test_mixed_actions_are_refused() -> None:
    with pytest.raises(ValueError, match="one report per action"):
        report(recipient(F), recipient(DV))


def test_one_action_for_many_recipients_is_fine() -> None:
    built = report(recipient(F), recipient(F, final_recipient="carol@example.org"))
    assert built.action is F


def test_a_null_reverse_path_cannot_be_reported_to() -> None:
    with pytest.raises(ValueError, match="null reverse-path"):
        report(original_sender="")


def test_a_report_needs_recipients() -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        report(recipients=())


@pytest.mark.parametrize(
    ("action", "status"),
    [(F, "2.0.0"), (DY, "5.1.1"), (DY, "2.0.0"), (DV, "4.2.2"), (R, "5.0.0"), (E, "4.0.0")],
)
def test_status_must_agree_with_the_action(action: Action, status: str) -> None:
    with pytest.raises(ValueError, match="status"):
        recipient(action, status=status)


def test_a_failure_may_keep_the_last_transient_status() -> None:
    assert recipient(F, status="4.4.7").status == "4.4.7"


@pytest.mark.parametrize("status", ["5.1", "5.01.1", "6.0.0", "5.1.1000", " 5.1.1", "5.1.1x"])
def test_malformed_status_is_refused(status: str) -> None:
    with pytest.raises(ValueError, match="RFC 3463"):
        recipient(status=status)


def test_will_retry_until_belongs_to_delays() -> None:
    with pytest.raises(ValueError, match="delayed"):
        recipient(F, will_retry_until=2_000_000_000.0)
    assert recipient(DY, will_retry_until=2_000_000_000.0).will_retry_until == 2e9


@pytest.mark.parametrize("orcpt", ["bob@example.org", ";bob@example.org", "rfc822;"])
def test_orcpt_needs_an_address_type(orcpt: str) -> None:
    with pytest.raises(ValueError, match="ORCPT"):
        recipient(original_recipient=orcpt)


@pytest.mark.parametrize("name", ["remote_mta", "remote_reply", "detail"])
def test_empty_text_is_none_not_blank(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        recipient(**{name: "  "})


@pytest.mark.parametrize("when", [-1.0, float("nan"), float("inf"), 1e12])
def test_times_must_be_writable_dates(when: float) -> None:
    with pytest.raises(ValueError, match="unix time"):
        recipient(last_attempt=when)
    with pytest.raises(ValueError, match="unix time"):
        report(arrival=when)


def test_return_content_must_be_one_of_three() -> None:
    with pytest.raises(ValueError, match="return_content"):
        report(return_content="body")


def test_final_recipient_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="final_recipient"):
        RecipientReport(final_recipient="", original_recipient=None, action=F, status="5.0.0")
