"""AccountAdmin: the account changes of the CLI and the API, their refusals and warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hato.accounts import (
    AccountAdmin,
    AccountError,
    AccountStore,
    Alias,
    InvalidInput,
    User,
    format_size,
    parse_size,
)


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore(tmp_path / "accounts.sqlite3", config_domains=["config.example"])


def _admin(store: AccountStore, **kwargs: object) -> AccountAdmin:
    return AccountAdmin(store, config_domains=["config.example"], **kwargs)  # type: ignore[arg-type]


def test_sizes_in_binary_multiples() -> None:
    assert parse_size("100M") == 100 << 20 and parse_size("2g") == 2 << 30
    assert parse_size("1KiB") == 1024 and parse_size("12000") == 12000
    for bad in ("lots", "0", "1.5G", "-1"):
        with pytest.raises(InvalidInput):
            parse_size(bad)
    assert format_size(100 << 20) == "100M" and format_size(1000) == "1000"
    assert format_size(None) == "-"


def test_a_domain_with_users_needs_force_and_says_what_went(store: AccountStore) -> None:
    admin = _admin(store, force_hint="?force=true")
    assert admin.add_domain("Example.COM").done == "added domain example.com"
    admin.add_user("a@example.com", None, None)
    with pytest.raises(AccountError, match=r"1 user and 0 aliases.*\?force=true"):
        admin.remove_domain("example.com")
    assert store.get_user("a@example.com") is not None
    removed = admin.remove_domain("example.com", force=True)
    assert removed.done == "removed domain example.com with 1 user(s) and 0 alias(es)"
    assert removed.warnings and "stays on disk" in removed.warnings[0]
    assert store.users() == ()


def test_a_configured_domain_is_refused_unless_the_store_holds_it(store: AccountStore) -> None:
    admin = _admin(store)
    with pytest.raises(AccountError, match=r"server\.local_domains \(hato\.toml\)"):
        admin.remove_domain("config.example", where="hato.toml")
    assert "also in server.local_domains" in admin.add_domain("config.example").done
    admin.add_user("u@config.example", None, None)
    change = admin.remove_domain("config.example")  # its users stay: it is still local
    assert change.done.endswith("it stays local through server.local_domains")
    assert store.get_user("u@config.example") is not None


def test_a_quota_below_the_usage_is_set_with_a_warning(store: AccountStore) -> None:
    held = {"big": 5000}
    admin = _admin(store, usage=lambda domain, local, quota: held.get(local, 0))
    admin.add_user("big@config.example", None, None)
    change = admin.set_quota("big@config.example", 4096)
    assert change.user is not None and change.user.quota == 4096
    [warning] = change.warnings
    assert "already holds 5000 bytes" in warning and "quota of 4K" in warning
    assert admin.set_quota("big@config.example", 1 << 20).warnings == ()
    assert admin.set_quota("big@config.example", None).done.endswith("to none")
    with pytest.raises(AccountError, match="no such user"):
        admin.set_quota("nobody@config.example", 10)
    with pytest.raises(InvalidInput):
        admin.set_quota("big@config.example", 0)


def test_an_alias_that_keeps_mail_from_a_new_user_is_a_warning(store: AccountStore) -> None:
    def shadowing(user: User) -> Alias | None:
        return store.get_alias(user.address)

    admin = _admin(store, shadowing=shadowing)
    store.add_alias("sales@config.example", ["x@example.org"])
    change = admin.add_user("sales@config.example", "pw", 1 << 20)
    assert change.done == "added user sales@config.example (quota 1M, password set)"
    [warning] = change.warnings
    assert "wins at delivery" in warning


def test_passwords_changed_and_removed(store: AccountStore) -> None:
    admin = _admin(store)
    admin.add_user("p@config.example", "old", None)
    assert admin.set_password("P@config.example", "new").done.startswith("changed the password")
    assert store.verify_password("p@config.example", "new")
    cleared = admin.set_password("p@config.example", None)
    assert cleared.user is not None and not cleared.user.has_password
    with pytest.raises(InvalidInput):
        admin.set_password("p@config.example", "")
    assert admin.remove_user("p@config.example").done == "removed user p@config.example"
