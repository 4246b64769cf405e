"""``hato config check`` and ``hato serve`` name the bad key, and a bad file never serves."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "hato.example.toml"
Run = Callable[..., subprocess.CompletedProcess[str]]

BAD_CONFIGS = {
    "below-minimum": ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients"),
    "wrong-type": ('[smtp]\nmax_recipients = "many"\n', "smtp.max_recipients"),
    "unknown-key": ("[smtp]\nmax_recipents = 5\n", "smtp.max_recipents"),
    "bad-listen": ('[server]\nlisten = ["127.0.0.1:2525", "1.2.3:25"]\n', "server.listen[1]"),
    "bad-enum": ('[smtp]\nbare_newline = "ignore"\n', "smtp.bare_newline"),
    "negative-timeout": ("[smtp]\nidle_timeout = -1\n", "smtp.idle_timeout"),
}


@pytest.mark.parametrize(("text", "key"), list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS.keys()))
def test_config_check_names_the_key(tmp_path: Path, hato_cli: Run, text: str, key: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = hato_cli("config", "check", bad)
    assert result.returncode != 0
    assert f"{bad}: {key}: " in result.stdout


def test_config_check_reports_every_problem(tmp_path: Path, hato_cli: Run) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp]\nmax_recipients = 0\nmax_errors = 0\n")
    result = hato_cli("config", "check", bad)
    assert result.returncode != 0
    assert "smtp.max_recipients" in result.stdout
    assert "smtp.max_errors" in result.stdout


def test_config_check_invalid_toml(tmp_path: Path, hato_cli: Run) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp\n")
    result = hato_cli("config", "check", bad)
    assert result.returncode != 0
    assert "TOML" in result.stdout


def test_config_check_example_is_valid(hato_cli: Run) -> None:
    result = hato_cli("config", "check", EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    *warnings, last = result.stdout.strip().splitlines()
    assert last.startswith(f"{EXAMPLE}: ok")
    # Only the machine's own name may be warned about (hostname "" takes it; see
    # test_config_secrets.py): the example itself holds nothing to warn about.
    assert all(": server.hostname: warning:" in line for line in warnings), warnings


def test_config_check_warns_of_an_open_relay_and_names_a_stray_key(
    tmp_path: Path, hato_cli: Run
) -> None:
    wide = tmp_path / "wide.toml"
    wide.write_text(
        '[server]\nhostname = "mx.example.com"\n'
        '[relay]\ntrusted_networks = ["127.0.0.0/8", "0.0.0.0/0", "::/0"]\n'
    )
    result = hato_cli("config", "check", wide)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f'{wide}: relay.trusted_networks[1]: warning: "0.0.0.0/0"')
    assert "OPEN RELAY" in lines[0] and "OPEN RELAY" in lines[1]
    assert lines[2] == f"{wide}: ok, with 2 warning(s)"
    stray = tmp_path / "stray.toml"
    stray.write_text('hostname = "mx.example.com"\n[server]\nlisten = ["127.0.0.1:2525"]\n')
    result = hato_cli("config", "check", stray)
    assert result.returncode == 1
    assert result.stdout == (
        f"{stray}: hostname: not a section: settings go in one;"
        " did you mean server.hostname (under [server])?\n"
    )


def test_serve_with_a_bad_config_exits_before_listening(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    hato = hato_factory(config="[smtp]\nmax_recipients = 0\n")
    with pytest.raises(AssertionError, match="before listening"):
        hato.start()
    assert hato.returncode not in (None, 0)
    assert "smtp.max_recipients" in hato.stderr()
    # Nothing was started: no event log, no spool.
    assert hato.events() == []
    assert not (hato.data_dir / "spool.sqlite3").exists()


def test_serve_with_the_example_config(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = hato_factory(config=EXAMPLE.read_text())
    hato.start()  # --listen and --data-dir override what the file says
    assert hato.events("server_started")[-1]["hostname"] == "mx.test.example"
    assert hato.stop() == 0
