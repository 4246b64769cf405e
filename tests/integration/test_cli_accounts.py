"""``hato domain|user|alias`` as an administrator runs them: the real console script, a
temporary data directory, and exit codes 0 (done), 1 (refused) and 2 (malformed input)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hato.accounts import ACCOUNTS_FILE, AccountStore
from hato.routing import LocalRouter, Mailbox, Unknown

HATO = Path(sys.executable).with_name("hato")
HOSTNAME = "mx.test.example"
CONFIG = f"""
[server]
hostname = "{HOSTNAME}"
local_domains = ["localhost", "{HOSTNAME}"]
"""


class Admin:
    """Runs ``hato ARGS --config CONFIG --data-dir DATA`` and keeps the last result."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()  # the commands refuse a data directory that does not exist
        self.config = tmp_path / "hato.toml"
        self.config.write_text(CONFIG)

    def args(self, *args: str) -> list[str]:
        return [str(HATO), *args, "--config", str(self.config), "--data-dir", str(self.data_dir)]

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "HATO_CONFIG"}
        return subprocess.run(
            self.args(*args), input=stdin, capture_output=True, text=True, timeout=60, env=env
        )

    def ok(self, *args: str, stdin: str = "") -> str:
        result = self(*args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str) -> list[dict[str, object]]:
        value = json.loads(self.ok(*args, "--json"))
        assert isinstance(value, list)
        return value

    def store(self) -> AccountStore:
        return AccountStore(self.data_dir / ACCOUNTS_FILE, config_domains=["localhost", HOSTNAME])


@pytest.fixture
def admin(tmp_path: Path) -> Admin:
    return Admin(tmp_path)


def assert_refused(result: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert says in result.stderr, result.stderr


# --- domains -------------------------------------------------------------------------------


def test_domain_add_list_remove(admin: Admin) -> None:
    assert admin.ok("domain", "add", "Bücher.Example.", "--no-dkim") == (
        "added domain xn--bcher-kva.example (bücher.example)\n"
    )
    admin.ok("domain", "add", HOSTNAME)
    domains = admin.json("domain", "list")
    assert [(d["domain"], d["config"], d["store"]) for d in domains] == [
        ("localhost", True, False),
        (HOSTNAME, True, True),
        ("xn--bcher-kva.example", False, True),
    ]
    assert domains[2]["unicode"] == "bücher.example"
    text = admin.ok("domain", "list")
    assert "localhost" in text and "config" in text
    assert f"{HOSTNAME}" in text and "config, store" in text
    admin.ok("domain", "remove", "xn--bcher-kva.example")
    assert [d["domain"] for d in admin.json("domain", "list")] == ["localhost", HOSTNAME]


def test_domain_refusals(admin: Admin) -> None:
    admin.ok("domain", "add", "example.com")
    assert_refused(admin("domain", "add", "EXAMPLE.com"), 1, "already exists")
    assert_refused(admin("domain", "add", "bad_domain!"), 2, "not a valid domain name")
    assert_refused(admin("domain", "add", "[192.0.2.1]"), 2, "address literal")
    assert_refused(admin("domain", "remove", "example.org"), 1, "not in the account store")
    assert_refused(admin("domain", "remove", "localhost"), 1, "server.local_domains")


def test_removing_a_domain_with_users_needs_force(admin: Admin) -> None:
    admin.ok("domain", "add", "example.com")
    admin.ok("user", "add", "alice@example.com")
    admin.ok("alias", "add", "sales@example.com", "alice@example.com")
    assert_refused(admin("domain", "remove", "example.com"), 1, "1 user and 1 alias")
    assert "with 1 user(s) and 1 alias(es)" in admin.ok(
        "domain", "remove", "example.com", "--force"
    )
    assert admin.json("user", "list") == [] and admin.json("alias", "list") == []


def test_listing_an_empty_data_dir_creates_nothing(admin: Admin) -> None:
    assert [d["domain"] for d in admin.json("domain", "list")] == ["localhost", HOSTNAME]
    assert admin.json("user", "list") == []
    assert admin.json("alias", "list") == []
    assert admin.ok("alias", "list") == ""
    assert list(admin.data_dir.iterdir()) == []


# --- users ---------------------------------------------------------------------------------


def test_user_add_and_list(admin: Admin) -> None:
    admin.ok("domain", "add", "bücher.example")
    out = admin.ok("user", "add", "Jörg@Bücher.Example", "--quota", "100M")
    assert (
        out == "added user Jörg@xn--bcher-kva.example (quota 100M, no password: it cannot log in)\n"
    )
    admin.ok("user", "add", "root@localhost", "--password-stdin", stdin="hunter2 \n")
    users = admin.json("user", "list")
    assert [(u["address"], u["quota"], u["has_password"]) for u in users] == [
        ("root@localhost", None, True),
        ("Jörg@xn--bcher-kva.example", 100 * 1024 * 1024, False),
    ]
    assert [u["address"] for u in admin.json("user", "list", "bücher.example")] == [
        "Jörg@xn--bcher-kva.example"
    ]
    text = admin.ok("user", "list")
    assert "Jörg@xn--bcher-kva.example" in text and "100M" in text
    with admin.store() as store:
        # The line end is not part of the password; the space before it is.
        assert store.verify_password("root@localhost", "hunter2 ")
        assert not store.verify_password("root@localhost", "hunter2")


def test_user_add_with_password_option(admin: Admin) -> None:
    admin.ok("user", "add", "root@localhost", "--password", "s3cret")
    with admin.store() as store:
        assert store.verify_password("root@localhost", "s3cret")
    assert "s3cret" not in (admin.data_dir / ACCOUNTS_FILE).read_bytes().decode("latin-1")


def test_user_refusals(admin: Admin) -> None:
    admin.ok("user", "add", "root@localhost")
    assert_refused(admin("user", "add", "ROOT@localhost"), 1, "already exists")
    assert_refused(admin("user", "add", "alice@example.org"), 1, "hato domain add example.org")
    assert_refused(admin("user", "add", "not an address"), 2, "not a valid address")
    assert_refused(admin("user", "add", "a@localhost", "--quota", "lots"), 2, "not a size")
    assert_refused(admin("user", "add", "a@localhost", "--quota", "0"), 2, "more than 0")
    both = admin("user", "add", "a@localhost", "--password", "x", "--password-stdin", stdin="x\n")
    assert_refused(both, 2, "not both")
    assert_refused(
        admin("user", "add", "a@localhost", "--password-stdin"), 2, "standard input is empty"
    )
    assert_refused(admin("user", "add", "a@localhost", "--password", ""), 2, "cannot be empty")
    assert_refused(admin("user", "remove", "nobody@localhost"), 1, "no such user")
    assert_refused(admin("user", "list", "example.org"), 1, "not local")
    assert [u["address"] for u in admin.json("user", "list")] == ["root@localhost"]


def test_user_remove(admin: Admin) -> None:
    admin.ok("user", "add", "Root@localhost")
    assert admin.ok("user", "remove", "root@LOCALHOST") == "removed user Root@localhost\n"
    assert admin.json("user", "list") == []


def test_quota_set_and_removed(admin: Admin) -> None:
    admin.ok("user", "add", "Root@localhost", "--quota", "1G")
    assert admin.ok("user", "quota", "root@localhost", "500M") == (
        "set the quota of Root@localhost to 500M\n"
    )
    assert admin.json("user", "list")[0]["quota"] == 500 << 20
    assert admin.ok("user", "quota", "root@localhost", "none").endswith("to none\n")
    assert admin.json("user", "list")[0]["quota"] is None
    assert_refused(admin("user", "quota", "root@localhost", "lots"), 2, "not a size")
    assert_refused(admin("user", "quota", "root@localhost", "0"), 2, "more than 0")
    assert_refused(admin("user", "quota", "nobody@localhost", "1M"), 1, "no such user")


def test_passwd_from_stdin_and_clear(admin: Admin) -> None:
    admin.ok("user", "add", "root@localhost", "--password", "old")
    admin.ok("user", "passwd", "ROOT@localhost", "--password-stdin", stdin="new\n")
    with admin.store() as store:
        assert store.verify_password("root@localhost", "new")
        assert not store.verify_password("root@localhost", "old")
    admin.ok("user", "passwd", "root@localhost", "--clear")
    assert admin.json("user", "list")[0]["has_password"] is False


def test_passwd_refusals(admin: Admin) -> None:
    admin.ok("user", "add", "root@localhost")
    assert_refused(admin("user", "passwd", "nobody@localhost"), 1, "no such user")
    # Not a terminal, and no --password-stdin: nothing to prompt on.
    assert_refused(admin("user", "passwd", "root@localhost"), 2, "--password-stdin")
    assert_refused(
        admin("user", "passwd", "root@localhost", "--password-stdin", stdin="\n"), 2, "empty"
    )


def read_until(fd: int, wanted: bytes, seen: bytearray, deadline: float) -> None:
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"waited for {wanted!r}, got {bytes(seen)!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            assert chunk, f"terminal closed before {wanted!r}; got {bytes(seen)!r}"
            seen += chunk


def test_passwd_prompts_twice_without_echo_on_a_terminal(admin: Admin) -> None:
    admin.ok("user", "add", "root@localhost")
    primary, secondary = os.openpty()
    # A new session has no controlling terminal, so the prompt goes to this pty, never to the
    # terminal the tests may run in.
    process = subprocess.Popen(
        admin.args("user", "passwd", "root@localhost"),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    seen = bytearray()
    deadline = time.monotonic() + 30
    try:
        read_until(primary, b"New password", seen, deadline)
        os.write(primary, b"pr0mpted\n")
        read_until(primary, b"Retype new password", seen, deadline)
        os.write(primary, b"pr0mpted\n")
        read_until(primary, b"changed the password of root@localhost", seen, deadline)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    assert b"pr0mpted" not in seen
    with admin.store() as store:
        assert store.verify_password("root@localhost", "pr0mpted")


# --- aliases -------------------------------------------------------------------------------


def test_alias_add_list_remove(admin: Admin) -> None:
    admin.ok("user", "add", "alice@localhost")
    admin.ok("user", "add", "bob@localhost")
    result = admin("alias", "add", "Team@localhost", "alice@localhost", "carol@remote.example")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == "Team@localhost -> alice@localhost, carol@remote.example\n"
    admin.ok("alias", "add", "team@localhost", "BOB@localhost", "alice@localhost")
    admin.ok("alias", "add", "@localhost", "alice@localhost")
    assert admin.json("alias", "list") == [
        {"source": "@localhost", "targets": ["alice@localhost"]},
        {
            "source": "Team@localhost",
            "targets": ["alice@localhost", "carol@remote.example", "BOB@localhost"],
        },
    ]
    assert "Team@localhost -> alice@localhost" in admin.ok("alias", "list")
    admin.ok("alias", "remove", "team@localhost", "carol@remote.example")
    assert admin.json("alias", "list")[1]["targets"] == ["alice@localhost", "BOB@localhost"]
    admin.ok("alias", "remove", "@localhost")
    assert [a["source"] for a in admin.json("alias", "list")] == ["Team@localhost"]


def test_alias_to_an_unknown_local_address_warns(admin: Admin) -> None:
    result = admin("alias", "add", "team@localhost", "ghost@localhost")
    assert result.returncode == 0
    assert "warning: ghost@localhost does not exist" in result.stderr


def test_user_add_under_an_existing_alias_says_the_alias_wins(admin: Admin) -> None:
    admin.ok("alias", "add", "sales@localhost", "alice@remote.example")
    result = admin("user", "add", "Sales@localhost")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "added user Sales@localhost (no password: it cannot log in)\n"
    assert result.stderr == (
        "warning: the alias sales@localhost -> alice@remote.example wins at delivery: mail for"
        " Sales@localhost goes to alice@remote.example, not into this mailbox; to keep a copy"
        " here: hato alias add sales@localhost Sales@localhost\n"
    )
    # Once the alias lists the mailbox too, both get a copy: nothing to warn about.
    admin.ok("alias", "add", "sales@localhost", "sales@localhost")
    admin.ok("user", "remove", "sales@localhost")
    assert admin("user", "add", "sales@localhost").stderr == ""


def test_alias_over_an_existing_user_says_the_mailbox_gets_nothing(admin: Admin) -> None:
    admin.ok("user", "add", "bob@localhost")
    result = admin("alias", "add", "bob@localhost", "carol@remote.example")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "warning: the user bob@localhost exists, and the alias wins at delivery: mail for"
        " bob@localhost goes to carol@remote.example, not into its mailbox; to keep a copy"
        " there: hato alias add bob@localhost bob@localhost\n"
    )
    assert admin("alias", "add", "bob@localhost", "bob@localhost").stderr == ""


def test_an_alias_loop_is_named_when_it_is_made(admin: Admin) -> None:
    admin.ok("user", "add", "alice@localhost")
    first = admin("alias", "add", "a@localhost", "b@localhost", "alice@localhost")
    assert first.returncode == 0
    assert "loop" not in first.stderr  # b does not exist yet: that warning only
    second = admin("alias", "add", "b@localhost", "a@localhost")
    assert second.returncode == 0, second.stderr
    assert second.stderr == (
        "warning: alias loop: b@localhost -> a@localhost -> b@localhost; mail for"
        " b@localhost that goes round it is returned to its sender as undeliverable (5.4.6),"
        " while the other addresses it leads to (alice@localhost) still get their copy\n"
    )
    # A loop with no way out delivers nothing at all.
    third = admin("alias", "add", "x@localhost", "x2@localhost")
    assert third.returncode == 0
    fourth = admin("alias", "add", "x2@localhost", "x@localhost")
    assert fourth.stderr == (
        "warning: alias loop: x2@localhost -> x@localhost -> x2@localhost; mail for"
        " x2@localhost that goes round it is returned to its sender as undeliverable (5.4.6),"
        " and nothing is delivered\n"
    )


def test_alias_refusals(admin: Admin) -> None:
    assert_refused(admin("alias", "add", "team@example.org", "a@localhost"), 1, "not local")
    assert_refused(admin("alias", "add", "team@localhost"), 2, "TARGET")
    assert_refused(admin("alias", "add", "team@localhost", "junk"), 2, "not a valid address")
    assert_refused(admin("alias", "remove", "team@localhost"), 1, "no such alias")
    admin.ok("alias", "add", "team@localhost", "a@localhost")
    assert_refused(admin("alias", "remove", "team@localhost", "b@localhost"), 1, "no target")


# --- a running server's view ---------------------------------------------------------------


def test_changes_reach_a_router_that_is_already_running(admin: Admin) -> None:
    admin.ok("domain", "add", "example.com")
    with admin.store() as store:
        router = LocalRouter(store, config_domains=["localhost"], hostname=HOSTNAME)
        assert router.lookup("alice+tag@example.com") == Unknown("alice+tag@example.com")
        admin.ok("user", "add", "alice@example.com")
        assert router.lookup("alice+tag@example.com") == Mailbox(
            "alice@example.com", "example.com", "alice", None
        )
        admin.ok("alias", "add", "@example.com", "alice@example.com")
        assert router.expand("whoever@example.com").mailboxes == (
            Mailbox("alice@example.com", "example.com", "alice", None),
        )
        admin.ok("domain", "remove", "example.com", "--force")
        assert not router.is_local_domain("example.com")
