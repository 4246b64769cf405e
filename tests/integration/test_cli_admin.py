"""The administration commands and the server they administer: the same data directory
(never a new, empty one by mistake), the same local domains, and queue commands that say
what was already so. Real ``hato serve`` processes and the real console script."""

from __future__ import annotations

import json
import os
import smtplib
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

HATO = Path(sys.executable).with_name("hato")
QUEUE_ID = "HOKQ1W6RU64076"  # well formed, never queued

# Every command that works on a data directory, with arguments it would accept.
DATA_COMMANDS = [
    ("domain", "add", "example.com"),
    ("domain", "list"),
    ("domain", "remove", "example.com"),
    ("user", "add", "bob@localhost"),
    ("user", "list"),
    ("user", "remove", "bob@localhost"),
    ("user", "passwd", "bob@localhost", "--clear"),
    ("alias", "add", "sales@localhost", "bob@localhost"),
    ("alias", "list"),
    ("alias", "remove", "sales@localhost"),
    ("queue", "list"),
    ("queue", "show", QUEUE_ID),
    ("queue", "flush"),
    ("queue", "hold", QUEUE_ID),
    ("queue", "release", QUEUE_ID),
    ("queue", "delete", QUEUE_ID),
    ("mailbox", "list", "postmaster@localhost"),
    ("mailbox", "show", "postmaster@localhost", "1"),
    ("trace", "--recipient", "bob@"),
]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HATO_CONFIG"}
    done = subprocess.run(
        [str(HATO), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


# --- the wrong data directory ----------------------------------------------------------------


@pytest.mark.parametrize("command", DATA_COMMANDS, ids=" ".join)
def test_commands_refuse_a_data_directory_that_does_not_exist(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    done = run(*command, cwd=tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"no data directory at {tmp_path / 'hato-data'}" in done.stderr
    assert "the default ./hato-data" in done.stderr
    assert "--data-dir" in done.stderr and "--config" in done.stderr
    assert "HATO_CONFIG" in done.stderr
    assert done.stdout == ""  # no "Mail queue is empty", no empty listing
    assert not (tmp_path / "hato-data").exists()


def test_an_explicit_data_dir_or_config_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    done = run("user", "add", "bob@localhost", "--data-dir", missing)
    assert done.returncode == 1
    assert f"no data directory at {missing} (given by --data-dir)" in done.stderr
    config = tmp_path / "hato.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "elsewhere"}"\n')
    done = run("queue", "list", "--config", config)
    assert done.returncode == 1
    assert f"no data directory at {tmp_path / 'elsewhere'} (server.data_dir of {config})" in (
        done.stderr
    )
    assert not missing.exists() and not (tmp_path / "elsewhere").exists()


def test_serve_still_creates_its_data_directory(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    server = hato_factory(accept_all=False, name="fresh")
    assert not server.data_dir.exists()
    server.start()
    assert run("queue", "list", "--data-dir", server.data_dir).stdout == "Mail queue is empty\n"


# --- settings given only on the command line -------------------------------------------------


def test_the_cli_sees_the_local_domains_of_the_running_server(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    server = hato_factory(accept_all=False, name="cmdline")
    server.hostname = "mx.cmdline.test"  # given only as hato serve --hostname
    server.start()
    added = run("user", "add", "carol@mx.cmdline.test", "--data-dir", server.data_dir)
    assert added.returncode == 0, added.stderr
    assert added.stderr == ""  # they agree: nothing to warn about
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        assert client.ehlo("client.test")[0] == 250
        assert client.mail("someone@example.org")[0] == 250
        assert client.rcpt("carol@mx.cmdline.test")[0] == 250  # the mailbox the CLI added
    record = server.data_dir / "server.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    recorded = json.loads(record.read_text())
    assert recorded["hostname"] == "mx.cmdline.test"
    assert recorded["pid"] == server.pid
    assert f"127.0.0.1:{server.port}" in recorded["listening"]

    listed = run("domain", "list", "--json", "--data-dir", server.data_dir)
    assert [d["domain"] for d in json.loads(listed.stdout)] == ["localhost", "mx.cmdline.test"]

    # A configuration that says otherwise is used, but never silently.
    config = tmp_path / "other.toml"
    config.write_text('[server]\nhostname = "other.test"\nlocal_domains = ["other.test"]\n')
    other = run("user", "list", "--config", config, "--data-dir", server.data_dir)
    assert other.returncode == 0
    assert "warning: server.hostname is other.test here" in other.stderr
    assert f"running as pid {server.pid}" in other.stderr
    assert "warning: server.local_domains is [other.test]" in other.stderr
    refused = run(
        "user", "add", "dan@mx.cmdline.test", "--config", config, "--data-dir", server.data_dir
    )
    assert refused.returncode == 1 and "not local" in refused.stderr

    # Stopped, the server's record still tells the CLI what it will use again.
    assert server.stop() == 0
    added = run("user", "add", "erin@mx.cmdline.test", "--data-dir", server.data_dir)
    assert added.returncode == 0, added.stderr
