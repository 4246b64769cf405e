"""The host pieces' reading of their environment: NOTIFY_SOCKET and WATCHDOG_*, LISTEN_*,
server.user/server.group; and what a reload compares (config.changed_keys)."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest

from hato.config import changed_keys, load_settings, with_keys
from hato.host import ActivationError, Notifier, PrivilegeError, inherited_sockets, run_as


@pytest.mark.parametrize(
    ("env", "address", "interval"),
    [
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, "/run/systemd/notify", None),
        ({"NOTIFY_SOCKET": "@hato"}, "\0hato", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "2000000"}, "/n", 1.0),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, "/n", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "soon"}, "/n", None),
        # Meant for another process (the one that started Hato): no pings.
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, "/n", None),
    ],
)
def test_notify_environment(env: dict[str, str], address: str, interval: float | None) -> None:
    if env.get("WATCHDOG_PID") == "1" and os.getpid() == 1:
        pytest.skip("this process is pid 1")
    notifier = Notifier.from_environment(env)
    assert notifier is not None
    try:
        assert notifier.address == address
        assert notifier.watchdog_interval == interval
    finally:
        notifier.close()


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative"}])
def test_no_notify_socket_no_notifier(env: dict[str, str]) -> None:
    assert Notifier.from_environment(env) is None


def test_notifications_are_datagrams_of_lines(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(tmp_path / "n"))
        notifier = Notifier(str(tmp_path / "n"))
        assert notifier.ready("serving")
        assert manager.recv(1024).decode() == f"READY=1\nSTATUS=serving\nMAINPID={os.getpid()}\n"
        assert notifier.stopping("bye")
        assert manager.recv(1024) == b"STOPPING=1\nSTATUS=bye\n"
        notifier.close()


def test_a_manager_gone_is_no_error(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert notifier.watchdog() is False
    notifier.close()


def test_activation_for_another_process_is_ignored_and_cleared() -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDNAMES": "smtp"}
    assert inherited_sockets(env) == {}
    assert env == {}  # never handed on to a child


def test_activation_names_must_match_the_count() -> None:
    env = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "smtp"}
    with pytest.raises(ActivationError, match="names 1 sockets, LISTEN_FDS 2"):
        inherited_sockets(env)


def test_no_activation() -> None:
    assert inherited_sockets({}) == {}
    assert inherited_sockets({"LISTEN_FDS": "0", "LISTEN_PID": str(os.getpid())}) == {}


def test_run_as_refusals_name_the_key() -> None:
    assert run_as("", "") is None
    with pytest.raises(PrivilegeError, match=r"server\.group: needs server.user"):
        run_as("", "nogroup")
    with pytest.raises(PrivilegeError, match=r"server\.user: no user 'no-such-user-here'"):
        run_as("no-such-user-here", "")
    with pytest.raises(PrivilegeError, match=r"server\.group: no group 'no-such-group-here'"):
        run_as("root", "no-such-group-here")


def test_run_as_oneself_is_nothing_to_give_up() -> None:
    import pwd

    me = pwd.getpwuid(os.geteuid())
    if os.getegid() != me.pw_gid:
        pytest.skip("running with another group than the user's own")
    assert run_as(me.pw_name, "") is None


def test_changed_keys_and_with_keys(tmp_path: Path) -> None:
    old = load_settings(None, overrides={"server.data_dir": str(tmp_path)})
    new = load_settings(
        None,
        overrides={
            "server.data_dir": str(tmp_path),
            "smtp.max_recipients": 7,
            "log.level": "warning",
        },
    )
    assert changed_keys(old, new) == ("smtp.max_recipients", "log.level")
    assert changed_keys(old, old) == ()
    merged = with_keys(old, new, ("log.level",))
    assert merged.log.level == "warning"
    assert merged.smtp == old.smtp
    assert dataclasses.replace(merged.log, level=old.log.level) == old.log
