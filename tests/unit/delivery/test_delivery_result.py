"""Results carry a status and an RFC 3463 code that agree, and OS errors map onto them."""

from __future__ import annotations

import errno
import os

import pytest

from hato.delivery import Result, Status, os_error_result


@pytest.mark.parametrize(
    ("status", "enhanced"),
    [
        (Status.DELIVERED, "2.0.0"),
        (Status.DEFERRED, "4.3.0"),
        (Status.FAILED, "5.4.6"),
        (Status.FAILED, "4.4.7"),  # a transient failure that became final: expired
        (Status.FAILED, "5.100.999"),
    ],
)
def test_consistent_results_are_built(status: Status, enhanced: str) -> None:
    assert Result(status=status, enhanced=enhanced, detail="x").enhanced == enhanced


@pytest.mark.parametrize(
    ("status", "enhanced", "detail"),
    [
        (Status.DELIVERED, "4.3.0", "ok"),
        (Status.DEFERRED, "5.4.6", "no"),
        (Status.DEFERRED, "2.0.0", "no"),
        (Status.FAILED, "2.0.0", "no"),
        (Status.FAILED, "5.4", "too short"),
        (Status.FAILED, "5.04.6", "leading zero"),
        (Status.FAILED, "5.4.1000", "too long"),
        (Status.FAILED, "550", "a reply code, not an enhanced one"),
        (Status.FAILED, "5.4.6", "two\r\nlines"),
    ],
)
def test_inconsistent_results_are_refused(status: Status, enhanced: str, detail: str) -> None:
    with pytest.raises(ValueError):
        Result(status=status, enhanced=enhanced, detail=detail)


@pytest.mark.parametrize(
    ("number", "enhanced"),
    [
        (errno.ENOSPC, "4.3.1"),
        (errno.EDQUOT, "4.2.2"),
        (errno.EFBIG, "4.3.4"),
        (errno.EACCES, "4.3.0"),
        (errno.EPERM, "4.3.0"),
        (errno.EIO, "4.3.0"),
        (errno.EROFS, "4.3.0"),
        (errno.ENOENT, "4.3.0"),
    ],
)
def test_os_errors_are_transient_and_say_why(number: int, enhanced: str) -> None:
    result = os_error_result(OSError(number, errno_text(number)), "cannot write")
    assert (result.status, result.enhanced) == (Status.DEFERRED, enhanced)
    assert result.detail == f"cannot write: {errno_text(number)}"


def test_an_os_error_without_errno_still_explains_itself() -> None:
    result = os_error_result(OSError("syncfs(2) is not available"), "cannot sync")
    assert result.status is Status.DEFERRED
    assert result.detail == "cannot sync: syncfs(2) is not available"


def errno_text(number: int) -> str:
    return os.strerror(number)
