"""snapshot(): lookups answered from memory, and never stale once the store has changed,
whether the change came through this connection or another (a `hato user` command)."""

from __future__ import annotations

from pathlib import Path

from hato.accounts import AccountStore
from hato.routing import LocalRouter, Mailbox, NotLocal, Unknown


def test_changes_from_another_connection_are_seen_by_the_next_lookup(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite3"
    server = AccountStore(path, config_domains=["example.com"])
    router = LocalRouter(server, config_domains=["example.com"], hostname="mx.example.com")
    assert isinstance(router.lookup("kim@example.com"), Unknown)
    assert isinstance(router.lookup("kim@example.com"), Unknown)  # now from memory
    cli = AccountStore(path, config_domains=["example.com"])
    cli.add_user("kim@example.com")
    assert isinstance(router.lookup("kim@example.com"), Mailbox)
    cli.add_domain("example.net")
    assert router.is_local_domain("example.net")
    cli.remove_user("kim@example.com")
    assert isinstance(router.lookup("kim@example.com"), Unknown)
    cli.close()
    server.close()


def test_own_writes_clear_the_memory(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "accounts.sqlite3", config_domains=["example.com"])
    router = LocalRouter(store, config_domains=["example.com"], hostname="mx.example.com")
    assert isinstance(router.lookup("lee@example.org"), NotLocal)
    store.add_domain("example.org")
    store.add_user("lee@example.org")
    assert isinstance(router.lookup("lee@example.org"), Mailbox)
    store.close()


def test_reads_outside_a_snapshot_always_ask_the_database(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite3"
    server = AccountStore(path, config_domains=["example.com"])
    cli = AccountStore(path, config_domains=["example.com"])
    with server.snapshot():
        assert not server.has_domain("example.org")
        cli.add_domain("example.org")
        # Inside one snapshot the answer stays as it was when the snapshot began.
        assert not server.has_domain("example.org")
    assert server.has_domain("example.org")
    cli.close()
    server.close()
