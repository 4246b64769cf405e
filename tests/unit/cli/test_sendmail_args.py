"""The ``sendmail`` command line as the programs that call it write it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hato.cli._sendmail_args import UsageError, parse_args


def test_what_php_cron_mailx_and_git_send_email_pass() -> None:
    php = parse_args(["-t", "-i"])
    assert php.extract and not php.dot_ends and php.recipients == []
    cron = parse_args(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"])
    assert cron.full_name == "CronDaemon" and cron.recipients == ["root"] and not cron.warnings
    mailx = parse_args(["-i", "--", "bob@localhost", "-not-an-option@localhost"])
    assert mailx.recipients == ["bob@localhost", "-not-an-option@localhost"]
    git = parse_args(["-i", "-f", "ann@localhost", "bob@localhost", "carol@localhost"])
    assert git.sender == "ann@localhost" and len(git.recipients) == 2


def test_bundled_flags_and_attached_values() -> None:
    options = parse_args(["-tif<>", "-Nsuccess,DELAY", "-R", "hdrs", "-Venv", "-v"])
    assert options.extract and not options.dot_ends and options.sender == ""
    assert options.notify == ("SUCCESS", "DELAY") and options.ret == "HDRS"
    assert options.envid == "env" and options.verbose


@pytest.mark.parametrize(
    ("args", "mode"),
    [
        (["-bm"], "deliver"),
        (["-bs"], "smtp"),
        (["-bp"], "list"),
        (["-q"], "flush"),
        (["-q30m"], "flush"),
        (["-bi"], "newaliases"),
        (["--help"], "help"),
    ],
)
def test_modes(args: list[str], mode: str) -> None:
    assert parse_args(args).mode == mode


def test_where_the_data_is() -> None:
    options = parse_args(["--config=/etc/hato.toml", "--data-dir", "/var/lib/hato", "x"])
    assert options.config == Path("/etc/hato.toml")
    assert options.data_dir == Path("/var/lib/hato")
    assert parse_args(["-C", "/etc/h.toml"]).config == Path("/etc/h.toml")


def test_unknown_options_are_warnings() -> None:
    options = parse_args(["-x", "-oQ/var/spool", "--frobnicate", "-Ak", "bob"])
    assert options.recipients == ["bob"]
    assert options.warnings == [
        "-x: unknown option, ignored",
        "-oQ/var/spool: ignored",
        "--frobnicate: unknown option, ignored",
        "-A: unknown option, ignored",
        "-k: unknown option, ignored",
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-f"], "-f needs a value"),
        (["-bd"], "-bd"),
        (["-N", "often"], "-N often"),
        (["-R", "all"], "-R all"),
        (["--data-dir"], "--data-dir needs a value"),
    ],
)
def test_usage_errors(args: list[str], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_args(args)
