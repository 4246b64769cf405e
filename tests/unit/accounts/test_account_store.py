"""The account store against a real SQLite file: domains, users, passwords and aliases."""

import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hato.accounts import ACCOUNTS_FILE, AccountError, AccountStore, Alias, InvalidInput

CONFIG_DOMAINS = ("localhost", "mx.test.example")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / ACCOUNTS_FILE


@pytest.fixture
def store(path: Path) -> Iterator[AccountStore]:
    with AccountStore(path, config_domains=CONFIG_DOMAINS, clock=Clock()) as s:
        s.add_domain("example.com")
        yield s


@pytest.fixture
def sensitive(tmp_path: Path) -> Iterator[AccountStore]:
    with AccountStore(tmp_path / "cs.sqlite3", case_sensitive=True) as s:
        s.add_domain("example.com")
        yield s


# --- the file ----------------------------------------------------------------------------


def test_creates_its_directory_and_a_private_wal_database(store: AccountStore, path: Path) -> None:
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_refuses_a_schema_it_does_not_know(path: Path) -> None:
    AccountStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(AccountError, match="schema version 99"):
        AccountStore(path)


def test_changes_are_seen_by_another_store_on_the_same_file(
    store: AccountStore, path: Path
) -> None:
    with AccountStore(path) as reader:
        assert reader.get_user("alice@example.com") is None  # read before the change
        store.add_user("alice@example.com")
        assert reader.get_user("alice@example.com") is not None
        store.add_alias("sales@example.com", ["alice@example.com"])
        assert reader.alias_targets("sales@example.com") == ("alice@example.com",)
        store.remove_user("alice@example.com")
        assert reader.get_user("alice@example.com") is None


def test_one_store_is_safe_to_share_between_threads(store: AccountStore) -> None:
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            for i in range(10):
                store.add_alias(f"list{n}@example.com", [f"member{i}@example.org"])
                store.get_alias(f"list{n}@example.com")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [len(a.targets) for a in store.aliases()] == [10, 10, 10, 10]


# --- domains -------------------------------------------------------------------------------


def test_domains_are_normalized_and_sorted(store: AccountStore) -> None:
    assert store.add_domain("Bücher.Example.") == "xn--bcher-kva.example"
    store.add_domain("a.example")
    assert store.domains() == ("a.example", "example.com", "xn--bcher-kva.example")
    assert store.has_domain("xn--bcher-kva.example")


def test_a_domain_is_added_once(store: AccountStore) -> None:
    with pytest.raises(AccountError, match=r"domain example\.com already exists"):
        store.add_domain("EXAMPLE.com")


def test_local_domains_are_the_configs_and_the_stores(store: AccountStore) -> None:
    assert store.is_local_domain("localhost")
    assert store.is_local_domain("example.com")
    assert not store.is_local_domain("example.org")


def test_removing_a_domain_with_users_needs_force(store: AccountStore) -> None:
    store.add_user("alice@example.com")
    store.add_alias("@example.com", "alice@example.com")
    with pytest.raises(AccountError, match="still has 1 user and 1 alias; remove them first"):
        store.remove_domain("example.com")
    assert store.has_domain("example.com")
    store.remove_domain("example.com", force=True)
    assert store.domains() == ()
    assert store.users() == () and store.aliases() == ()


def test_an_empty_domain_is_removed_without_force(store: AccountStore) -> None:
    store.remove_domain("example.com")
    assert not store.is_local_domain("example.com")
    with pytest.raises(AccountError, match="not in the account store"):
        store.remove_domain("example.com")


def test_a_domain_the_config_keeps_local_keeps_its_users(store: AccountStore) -> None:
    store.add_domain("localhost")
    store.add_user("root@localhost")
    store.remove_domain("localhost", force=True)
    assert store.get_user("root@localhost") is not None


def test_counts(store: AccountStore) -> None:
    store.add_user("a@example.com")
    store.add_user("b@example.com")
    store.add_alias("c@example.com", "a@example.com")
    assert store.counts("Example.com") == (2, 1)


# --- users ---------------------------------------------------------------------------------


def test_add_and_get_a_user(store: AccountStore) -> None:
    added = store.add_user("Alice@Example.COM", quota=1024)
    assert added.address == "Alice@example.com"
    assert (added.local_part, added.domain, added.quota) == ("Alice", "example.com", 1024)
    assert not added.has_password
    assert added.created == 1_700_000_002.0
    assert store.get_user("alice@example.com") == added
    assert store.get_user("bob@example.com") is None


def test_users_go_only_to_local_domains(store: AccountStore) -> None:
    with pytest.raises(AccountError, match=r"not local; add it with: hato domain add example\.org"):
        store.add_user("alice@example.org")
    assert store.add_user("root@localhost").domain == "localhost"  # a config domain


def test_a_user_is_added_once_whatever_the_case(store: AccountStore) -> None:
    store.add_user("alice@example.com")
    with pytest.raises(AccountError, match=r"user alice@example\.com already exists"):
        store.add_user("ALICE@example.com")


def test_case_sensitive_store_keeps_case_apart(sensitive: AccountStore) -> None:
    sensitive.add_user("alice@example.com")
    sensitive.add_user("Alice@example.com")
    assert sensitive.get_user("Alice@example.com").local_part == "Alice"  # type: ignore[union-attr]
    assert sensitive.get_user("ALICE@example.com") is None
    # Unless asked otherwise: the router may compare case-insensitively.
    found = sensitive.get_user("ALICE@example.com", case_sensitive=False)
    assert found is not None and found.local_part in ("alice", "Alice")


def test_an_exact_spelling_wins_over_a_case_variant(sensitive: AccountStore) -> None:
    sensitive.add_user("alice@example.com")
    sensitive.add_user("Alice@example.com")
    found = sensitive.get_user("Alice@example.com", case_sensitive=False)
    assert found is not None and found.local_part == "Alice"


def test_postmaster_is_one_user_in_any_case(sensitive: AccountStore) -> None:
    sensitive.add_user("postmaster@example.com")
    with pytest.raises(AccountError, match="already exists"):
        sensitive.add_user("PostMaster@example.com")
    assert sensitive.get_user("POSTMASTER@example.com") is not None


def test_quoted_and_plain_local_parts_are_one_user(store: AccountStore) -> None:
    store.add_user('"alice"@example.com')
    assert store.get_user("alice@example.com") is not None


@pytest.mark.parametrize("quota", [0, -1, True, 1.5])
def test_a_quota_is_a_positive_number_of_bytes(store: AccountStore, quota: object) -> None:
    with pytest.raises(InvalidInput, match="quota"):
        store.add_user("alice@example.com", quota=quota)  # type: ignore[arg-type]


def test_users_are_listed_by_domain_then_local_part(store: AccountStore) -> None:
    for address in ("zed@example.com", "Bob@example.com", "amy@example.com", "root@localhost"):
        store.add_user(address)
    assert [u.address for u in store.users()] == [
        "amy@example.com",
        "Bob@example.com",
        "zed@example.com",
        "root@localhost",
    ]
    assert [u.address for u in store.users("LOCALHOST")] == ["root@localhost"]


def test_removing_a_user(store: AccountStore) -> None:
    store.add_user("alice@example.com")
    store.remove_user("ALICE@example.com")
    assert store.users() == ()
    with pytest.raises(AccountError, match=r"no such user: alice@example\.com"):
        store.remove_user("alice@example.com")


def test_invalid_addresses_are_invalid_input(store: AccountStore) -> None:
    with pytest.raises(InvalidInput):
        store.add_user("not an address")
    with pytest.raises(InvalidInput):
        store.get_user("@example.com")


# --- passwords -----------------------------------------------------------------------------


def test_passwords_verify_and_are_never_stored_in_clear(store: AccountStore, path: Path) -> None:
    added = store.add_user("alice@example.com", password="Tr0ub4dor&3")
    assert added.has_password
    assert store.verify_password("Alice@example.com", "Tr0ub4dor&3")
    assert not store.verify_password("alice@example.com", "tr0ub4dor&3")
    store.close()
    for file in path.parent.iterdir():
        assert b"Tr0ub4dor" not in file.read_bytes(), file


def test_unknown_users_and_users_without_password_never_verify(store: AccountStore) -> None:
    store.add_user("alice@example.com")
    assert not store.verify_password("alice@example.com", "anything")
    assert not store.verify_password("nobody@example.com", "anything")
    assert not store.verify_password("not an address", "anything")


def test_set_and_clear_a_password(store: AccountStore) -> None:
    store.add_user("alice@example.com", password="old")
    store.set_password("ALICE@example.com", "new")
    assert store.verify_password("alice@example.com", "new")
    assert not store.verify_password("alice@example.com", "old")
    store.set_password("alice@example.com", None)
    assert not store.get_user("alice@example.com").has_password  # type: ignore[union-attr]
    with pytest.raises(AccountError, match="no such user"):
        store.set_password("bob@example.com", "x")
    with pytest.raises(InvalidInput, match="empty"):
        store.set_password("alice@example.com", "")


def test_a_damaged_hash_says_how_to_repair_it(store: AccountStore, path: Path) -> None:
    store.add_user("alice@example.com", password="secret")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE users SET password = 'garbage'")
    with pytest.raises(AccountError, match=r"hato user passwd alice@example\.com"):
        store.verify_password("alice@example.com", "secret")


# --- aliases -------------------------------------------------------------------------------


def test_an_alias_leads_to_local_and_remote_targets(store: AccountStore) -> None:
    alias = store.add_alias("Sales@Example.com", ["alice@example.com", "Bob@Partner.Example"])
    assert alias == Alias(
        source="Sales@example.com", targets=("alice@example.com", "Bob@partner.example")
    )
    assert store.alias_targets("sales@example.com") == alias.targets
    assert store.alias_targets("support@example.com") is None


def test_adding_to_an_alias_appends_new_targets_only(store: AccountStore) -> None:
    store.add_alias("sales@example.com", "alice@example.com")
    alias = store.add_alias("SALES@example.com", ["ALICE@example.com", "carol@example.com"])
    assert alias.targets == ("alice@example.com", "carol@example.com")
    assert alias.source == "sales@example.com"


def test_catch_all_alias(store: AccountStore) -> None:
    store.add_alias("@Example.com", "alice@example.com")
    assert store.alias_targets("@example.com") == ("alice@example.com",)
    assert store.aliases() == (Alias(source="@example.com", targets=("alice@example.com",)),)


def test_aliases_only_in_local_domains_and_with_valid_targets(store: AccountStore) -> None:
    with pytest.raises(AccountError, match="not local"):
        store.add_alias("sales@example.org", "alice@example.com")
    with pytest.raises(InvalidInput, match="at least one target"):
        store.add_alias("sales@example.com", [])
    with pytest.raises(InvalidInput):
        store.add_alias("sales@example.com", ["alice@example.com", "@example.com"])
    assert store.aliases() == ()


def test_removing_targets_and_aliases(store: AccountStore) -> None:
    store.add_alias("sales@example.com", ["a@example.com", "b@example.com", "c@example.com"])
    store.remove_alias("sales@example.com", "B@example.com")
    assert store.alias_targets("sales@example.com") == ("a@example.com", "c@example.com")
    with pytest.raises(AccountError, match=r"has no target b@example\.com"):
        store.remove_alias("sales@example.com", "b@example.com")
    store.add_alias("sales@example.com", "d@example.com")  # positions stay consistent
    assert store.alias_targets("sales@example.com") == (
        "a@example.com",
        "c@example.com",
        "d@example.com",
    )
    store.remove_alias("sales@example.com")
    assert store.alias_targets("sales@example.com") is None
    with pytest.raises(AccountError, match=r"no such alias: sales@example\.com"):
        store.remove_alias("sales@example.com")


def test_removing_the_last_target_removes_the_alias(store: AccountStore) -> None:
    store.add_alias("sales@example.com", "a@example.com")
    store.remove_alias("sales@example.com", "a@example.com")
    assert store.aliases() == ()


def test_aliases_are_listed_by_domain_and_source(store: AccountStore) -> None:
    store.add_alias("zz@example.com", "a@example.com")
    store.add_alias("@example.com", "a@example.com")
    store.add_alias("abuse@localhost", "a@example.com")
    store.add_alias("aa@example.com", ["b@example.com", "a@example.com"])
    assert [a.source for a in store.aliases()] == [
        "@example.com",
        "aa@example.com",
        "zz@example.com",
        "abuse@localhost",
    ]
    assert store.aliases()[1].targets == ("b@example.com", "a@example.com")
    assert [a.source for a in store.aliases("localhost")] == ["abuse@localhost"]


def test_case_sensitive_aliases_keep_case_apart(sensitive: AccountStore) -> None:
    sensitive.add_alias("Sales@example.com", "a@example.com")
    sensitive.add_alias("sales@example.com", "b@example.com")
    assert sensitive.alias_targets("Sales@example.com") == ("a@example.com",)
    assert sensitive.alias_targets("sales@example.com") == ("b@example.com",)
    assert sensitive.alias_targets("SALES@example.com") is None
