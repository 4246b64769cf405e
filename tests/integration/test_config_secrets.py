"""``hato config show`` and ``check`` never print a secret unless asked to
(``--show-secrets``), and both warn about a hostname that is not fully qualified.

The real ``hato`` command in a subprocess, on real files.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

Run = Callable[..., CompletedProcess[str]]
PASSWORD = "s3cr3t-smarthost-pw"
CONFIG = f"""\
[relay]
smarthost = "smarthost.example.com:587"
smarthost_username = "hato"
smarthost_password = "{PASSWORD}"
"""


@pytest.mark.parametrize("as_json", [False, True], ids=["toml", "json"])
def test_config_show_masks_the_smarthost_password(
    tmp_path: Path, hato_cli: Run, as_json: bool
) -> None:
    config = tmp_path / "hato.toml"
    config.write_text(CONFIG)
    json_flag = ["--json"] if as_json else []
    shown = hato_cli("config", "show", "--config", config, *json_flag)
    assert shown.returncode == 0, shown.stderr
    assert PASSWORD not in shown.stdout + shown.stderr
    assert "hato" in shown.stdout  # the user name is no secret
    revealed = hato_cli("config", "show", "--config", config, "--show-secrets", *json_flag)
    assert revealed.returncode == 0, revealed.stderr
    if as_json:
        assert json.loads(shown.stdout)["relay"]["smarthost_password"] == "********"
        assert json.loads(revealed.stdout)["relay"]["smarthost_password"] == PASSWORD
    else:
        assert 'smarthost_password = "********"' in shown.stdout
        assert f'smarthost_password = "{PASSWORD}"' in revealed.stdout


def test_config_show_with_an_override_masks_it_too(hato_cli: Run) -> None:
    shown = hato_cli("config", "show", "-o", f"relay.smarthost_password={PASSWORD}")
    assert shown.returncode == 0, shown.stderr
    assert PASSWORD not in shown.stdout


def test_an_unset_password_shows_as_unset(hato_cli: Run) -> None:
    shown = hato_cli("config", "show", "--json")
    assert json.loads(shown.stdout)["relay"]["smarthost_password"] == ""


def test_config_check_does_not_repeat_a_mistyped_secret(tmp_path: Path, hato_cli: Run) -> None:
    config = tmp_path / "hato.toml"
    config.write_text("[relay]\nsmarthost_password = 73310042\n")  # a number, not a string
    for args in (("config", "check", config), ("config", "show", "--config", config)):
        checked = hato_cli(*args)
        assert checked.returncode != 0
        assert "relay.smarthost_password" in checked.stdout + checked.stderr
        assert "73310042" not in checked.stdout + checked.stderr


# -- the hostname --------------------------------------------------------------------------


def hostname_warning(output: str) -> list[str]:
    return [line for line in output.splitlines() if "server.hostname" in line]


def test_config_check_warns_about_a_hostname_that_is_not_fully_qualified(
    tmp_path: Path, hato_cli: Run
) -> None:
    config = tmp_path / "hato.toml"
    config.write_text('[server]\nhostname = "mail"\n')
    checked = hato_cli("config", "check", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # a warning, not an error
    (warning,) = hostname_warning(checked.stdout + checked.stderr)
    assert "warning" in warning and '"mail"' in warning and "fully qualified" in warning


def test_config_check_warns_about_the_machine_name_when_it_is_not_qualified(
    tmp_path: Path, hato_cli: Run
) -> None:
    if "." in socket.getfqdn().strip("."):
        pytest.skip("this machine's name is fully qualified")
    config = tmp_path / "hato.toml"
    config.write_text("[server]\n")  # hostname "": the machine's name
    checked = hato_cli("config", "check", config)
    assert checked.returncode == 0
    (warning,) = hostname_warning(checked.stdout + checked.stderr)
    assert "getfqdn" in warning or "machine" in warning


def test_config_check_is_quiet_about_a_fully_qualified_hostname(
    tmp_path: Path, hato_cli: Run
) -> None:
    config = tmp_path / "hato.toml"
    config.write_text('[server]\nhostname = "mx.example.com"\n')
    checked = hato_cli("config", "check", config)
    assert checked.returncode == 0
    assert hostname_warning(checked.stdout + checked.stderr) == []


@pytest.mark.parametrize("hostname", ["localhost", "mail", "localhost.localdomain"])
def test_serve_warns_about_a_hostname_that_is_not_fully_qualified(
    hato_factory: Callable[..., HatoProcess], hostname: str
) -> None:
    hato = hato_factory(accept_all=False)
    hato.hostname = hostname
    hato.start()
    hato.stop()
    (warning,) = hostname_warning(hato.stderr())
    assert f'"{hostname}"' in warning and "fully qualified" in warning


def test_serve_is_quiet_about_a_fully_qualified_hostname(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = hato_factory(accept_all=False)
    hato.start()
    hato.stop()
    assert hostname_warning(hato.stderr()) == []
