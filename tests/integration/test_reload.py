"""SIGHUP against a real ``hato serve``: a changed policy rule applies to new sessions while
an open one completes; a broken file is refused and the server serves on; what needs a
restart is named."""

from __future__ import annotations

import signal
import smtplib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

SENDER = "someone@bad.example"
RECIPIENT = "user@mx.test.example"
MESSAGE = b"Subject: reload\r\n\r\nHello.\r\n"
NO_RULES = '[policy]\nmail = []\n\n[log]\nlevel = "info"\n'
REJECT_BAD = (
    "[policy]\n"
    'mail = [{ action = "reject", sender = ["@bad.example"], name = "no-bad" }]\n\n'
    '[log]\nlevel = "warning"\n'
)


@pytest.fixture(scope="module")
def served(
    module_hato_factory: Callable[..., HatoProcess], tmp_path_factory: pytest.TempPathFactory
) -> tuple[HatoProcess, Path]:
    config = tmp_path_factory.mktemp("reload") / "hato.toml"
    config.write_text(NO_RULES)
    process = module_hato_factory("reload", start=False)
    process.config = config
    process.start()
    return process, config


def hang_up(hato: HatoProcess, event: str) -> dict[str, object]:
    before = len(hato.events(event))
    hato.signal(signal.SIGHUP)
    found = hato.poll(lambda: hato.events(event)[before:], what=event)
    return found[0]  # type: ignore[no-any-return]


def mail_code(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example")
        code, _ = client.mail(SENDER)
        return code


def test_a_new_rule_applies_to_new_sessions_while_an_open_one_completes(
    served: tuple[HatoProcess, Path],
) -> None:
    hato, config = served
    open_session = smtplib.SMTP("127.0.0.1", hato.port, timeout=10)
    open_session.ehlo("client.example")
    assert open_session.mail(SENDER)[0] == 250
    assert open_session.rcpt(RECIPIENT)[0] == 250

    config.write_text(REJECT_BAD)
    reloaded = hang_up(hato, "config_reloaded")
    assert "policy.mail" in reloaded["applied"]
    assert "log.level" in reloaded["applied"]
    assert reloaded["restart_needed"] == []

    assert mail_code(hato.port) == 554  # a new session: the new rule
    code, text = open_session.data(MESSAGE)  # the open one completes under its own rules
    assert code == 250, text
    assert open_session.mail(SENDER)[0] == 250
    open_session.rset()
    open_session.quit()
    refused = hato.wait_for_event("reject", rule="no-bad")
    assert refused["sender"] == SENDER


def test_a_broken_file_is_refused_and_the_rules_in_force_stay(
    served: tuple[HatoProcess, Path],
) -> None:
    hato, config = served
    config.write_text(REJECT_BAD)
    hang_up(hato, "config_reloaded")
    broken_files = (
        ("[policy\nmail = 3\n", "invalid TOML"),
        ('[policy]\nmail = [{ action = "maybe" }]\n', "policy.mail[0]"),
    )
    for broken, words in broken_files:
        config.write_text(broken)
        failed = hang_up(hato, "config_reload_failed")
        assert words in str(failed["error"])
        assert mail_code(hato.port) == 554  # still the rule in force before
        with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
            client.ehlo("client.example")
            assert client.sendmail("good@client.example", [RECIPIENT], MESSAGE) == {}
    assert hato.running


def test_what_needs_a_restart_is_named(served: tuple[HatoProcess, Path]) -> None:
    hato, config = served
    config.write_text(NO_RULES + "\n[smtp]\nmax_recipients = 7\n")
    reloaded = hang_up(hato, "config_reloaded")
    assert "smtp.max_recipients" in reloaded["restart_needed"]
    assert "policy.mail" in reloaded["applied"]
    warned = hato.wait_for_event("config_restart_needed", keys=["smtp.max_recipients"])
    assert warned
    assert mail_code(hato.port) == 250  # the rule went away with the file's change


def test_the_listeners_are_not_closed(served: tuple[HatoProcess, Path]) -> None:
    hato, config = served
    port = hato.port
    config.write_text(NO_RULES)
    hang_up(hato, "config_reloaded")
    assert hato.port == port and mail_code(port) == 250
