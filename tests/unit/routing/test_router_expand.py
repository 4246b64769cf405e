"""LocalRouter.expand: where a message goes, aliases followed, loops and depth bounded.

The store fixture (conftest.py) has config domains localhost, mx.test.example and
example.com, the store domain bücher.example, and users alice@example.com (quota 1000),
Bob@example.com and jörg@bücher.example.
"""

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hato.accounts import AccountStore, Address, Alias
from hato.routing import (
    ALIAS_LOOP,
    BAD_ADDRESS,
    MAX_ALIAS_DEPTH,
    UNKNOWN_MAILBOX,
    Expansion,
    Failure,
    LocalRouter,
    Mailbox,
)

ALICE = Mailbox("alice@example.com", "example.com", "alice", 1000)
BOB = Mailbox("Bob@example.com", "example.com", "Bob", None)
POSTMASTER = Mailbox("postmaster@mx.test.example", "mx.test.example", "postmaster", None)

Router = Callable[..., LocalRouter]


def test_a_mailbox(router: LocalRouter) -> None:
    assert router.expand("ALICE+tag@example.com") == Expansion(mailboxes=(ALICE,))


def test_a_remote_address_is_left_for_the_relay(router: LocalRouter) -> None:
    assert router.expand("carol@Partner.Example") == Expansion(remote=("carol@partner.example",))


def test_an_unknown_local_address_fails_with_5_1_1(router: LocalRouter) -> None:
    expansion = router.expand("carol@example.com")
    assert expansion.mailboxes == () and expansion.remote == ()
    assert expansion.failures == (
        Failure("carol@example.com", UNKNOWN_MAILBOX, "carol@example.com: no such mailbox"),
    )


def test_a_malformed_address_fails_with_5_1_3(router: LocalRouter) -> None:
    (failure,) = router.expand("no at sign").failures
    assert (failure.address, failure.status) == ("no at sign", BAD_ADDRESS)


def test_one_alias_to_local_and_remote_targets(router: LocalRouter, store: AccountStore) -> None:
    store.add_alias(
        "team@example.com", ["alice@example.com", "bob@example.com", "carol@partner.example"]
    )
    assert router.expand("team@example.com") == Expansion(
        mailboxes=(ALICE, BOB), remote=("carol@partner.example",)
    )


def test_nested_aliases_and_duplicates(router: LocalRouter, store: AccountStore) -> None:
    store.add_alias(
        "all@example.com", ["sales@example.com", "dev@example.com", "ALICE@example.com"]
    )
    store.add_alias("sales@example.com", ["alice@example.com", "carol@partner.example"])
    store.add_alias("dev@example.com", ["bob+dev@example.com", "carol@partner.example"])
    assert router.expand("all@example.com") == Expansion(
        mailboxes=(ALICE, BOB), remote=("carol@partner.example",)
    )


def test_an_unknown_target_fails_and_says_which_alias(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("team@example.com", ["alice@example.com", "ghost@example.com"])
    expansion = router.expand("team@example.com")
    assert expansion.mailboxes == (ALICE,)
    assert expansion.failures == (
        Failure(
            "ghost@example.com",
            UNKNOWN_MAILBOX,
            "ghost@example.com: no such mailbox (via team@example.com)",
        ),
    )


def test_an_alias_loop_fails_with_5_4_6(router: LocalRouter, store: AccountStore) -> None:
    store.add_alias("a@example.com", ["b@example.com"])
    store.add_alias("b@example.com", ["A@example.com", "alice@example.com"])
    expansion = router.expand("a@example.com")
    assert expansion.mailboxes == (ALICE,)
    assert expansion.failures == (
        Failure(
            "A@example.com",
            ALIAS_LOOP,
            "alias loop: a@example.com -> b@example.com -> a@example.com",
        ),
    )


def test_a_loop_through_plus_addressing_is_still_a_loop(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("a@example.com", ["a+again@example.com"])
    (failure,) = router.expand("a@example.com").failures
    assert failure.status == ALIAS_LOOP
    assert failure.reason == "alias loop: a@example.com -> a@example.com"


def test_an_alias_listing_itself_also_reaches_its_mailbox(
    router: LocalRouter, store: AccountStore
) -> None:
    # As in Postfix's aliases(5): "alice: alice, bob" keeps a copy in alice's mailbox.
    store.add_alias("alice@example.com", ["Alice@example.com", "bob@example.com"])
    assert router.expand("alice@example.com") == Expansion(mailboxes=(ALICE, BOB))
    assert router.expand("alice+x@example.com") == Expansion(mailboxes=(ALICE, BOB))


def test_an_alias_listing_itself_without_a_mailbox_fails(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("carol@example.com", ["carol@example.com", "bob@example.com"])
    expansion = router.expand("carol@example.com")
    assert expansion.mailboxes == (BOB,)
    ((address, status, reason),) = [(f.address, f.status, f.reason) for f in expansion.failures]
    assert (address, status) == ("carol@example.com", UNKNOWN_MAILBOX)
    assert "lists itself" in reason


def chain(store: AccountStore, length: int) -> str:
    """``length`` aliases, each leading to the next, the last to alice; returns the first."""
    for n in range(length):
        following = f"hop{n + 1}@example.com" if n + 1 < length else "alice@example.com"
        store.add_alias(f"hop{n}@example.com", following)
    return "hop0@example.com"


def test_aliases_nested_as_deep_as_allowed(router: LocalRouter, store: AccountStore) -> None:
    start = chain(store, MAX_ALIAS_DEPTH)
    assert router.expand(start) == Expansion(mailboxes=(ALICE,))


def test_aliases_nested_deeper_fail_with_5_4_6(router: LocalRouter, store: AccountStore) -> None:
    start = chain(store, MAX_ALIAS_DEPTH + 1)
    expansion = router.expand(start)
    assert expansion.mailboxes == ()
    (failure,) = expansion.failures
    assert failure.status == ALIAS_LOOP
    assert failure.reason.startswith(f"aliases nested deeper than {MAX_ALIAS_DEPTH}: hop0@")


class CountingStore(AccountStore):
    """A real store that counts alias lookups, to see how much work an expansion does."""

    alias_lookups = 0

    def get_alias(
        self, source: str | Address, *, case_sensitive: bool | None = None
    ) -> Alias | None:
        self.alias_lookups += 1
        return super().get_alias(source, case_sensitive=case_sensitive)


def test_fan_in_is_followed_once_not_exponentially(tmp_path: Path) -> None:
    # Each level leads twice to the next: naively 2**19 paths, a few dozen lookups here.
    with CountingStore(tmp_path / "a.sqlite3", config_domains=["example.com"]) as store:
        store.add_user("alice@example.com")
        for n in range(MAX_ALIAS_DEPTH - 1):
            following = f"l{n + 1}@example.com" if n + 2 < MAX_ALIAS_DEPTH else "alice@example.com"
            store.add_alias(f"l{n}@example.com", [following, following.replace("@", "+x@")])
        router = LocalRouter(store, config_domains=["example.com"], hostname="mx.example.com")
        expansion = router.expand("l0@example.com")
        assert [m.address for m in expansion.mailboxes] == ["alice@example.com"]
        assert expansion.failures == ()
        assert store.alias_lookups < 10 * MAX_ALIAS_DEPTH


def test_the_catch_all(router: LocalRouter, store: AccountStore) -> None:
    store.add_alias("@example.com", ["alice@example.com", "carol@partner.example"])
    assert router.expand("whoever@example.com") == Expansion(
        mailboxes=(ALICE,), remote=("carol@partner.example",)
    )
    assert router.expand("bob@example.com") == Expansion(mailboxes=(BOB,))


def test_a_catch_all_to_an_unknown_address_of_its_domain_is_a_loop(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("@example.com", "nobody@example.com")
    (failure,) = router.expand("whoever@example.com").failures
    assert failure.status == ALIAS_LOOP
    assert failure.reason == "alias loop: @example.com -> @example.com"


def test_postmaster_reaches_the_implicit_mailbox(router: LocalRouter) -> None:
    assert router.expand("postmaster@bücher.example") == Expansion(mailboxes=(POSTMASTER,))
    assert router.expand("Postmaster") == Expansion(mailboxes=(POSTMASTER,))


def test_an_alias_to_the_postmaster_itself(router: LocalRouter, store: AccountStore) -> None:
    store.add_alias(
        "postmaster@mx.test.example", ["postmaster@mx.test.example", "alice@example.com"]
    )
    assert router.expand("postmaster@example.com") == Expansion(mailboxes=(POSTMASTER, ALICE))


def test_a_remote_postmaster_is_relayed_to(make_router: Router) -> None:
    router = make_router(postmaster="hostmaster@isp.example")
    assert router.expand("postmaster@example.com") == Expansion(remote=("hostmaster@isp.example",))


def test_case_sensitive_expansion_keeps_case_apart(
    make_router: Router, store: AccountStore
) -> None:
    router = make_router(case_sensitive=True)
    store.add_alias("team@example.com", ["alice+x@example.com", "ALICE+y@example.com"])
    expansion = router.expand("team@example.com")
    assert expansion.mailboxes == (ALICE,)
    assert [f.address for f in expansion.failures] == ["ALICE+y@example.com"]


# --- any alias graph -----------------------------------------------------------------------

NAMES = ["a", "b", "c", "d", "alice", "bob", "ghost"]
TARGETS = st.sampled_from([*NAMES, "x+t", "far@remote.example"])


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "@"]),
        st.lists(TARGETS, min_size=1, max_size=4),
        max_size=5,
    ),
    st.sampled_from(NAMES),
)
def test_any_alias_graph_expands_to_a_finite_duplicate_free_answer(
    graph: dict[str, list[str]], start: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "accounts.sqlite3"
        with AccountStore(path, config_domains=["example.com"]) as store:
            store.add_user("alice@example.com")
            store.add_user("bob@example.com")
            for source, targets in graph.items():
                source_text = "@example.com" if source == "@" else f"{source}@example.com"
                store.add_alias(
                    source_text, [t if "@" in t else f"{t}@example.com" for t in targets]
                )
            router = LocalRouter(store, config_domains=["example.com"], hostname="example.com")
            expansion = router.expand(f"{start}@example.com")
    addresses = [m.address for m in expansion.mailboxes]
    assert len(addresses) == len(set(addresses))
    assert set(addresses) <= {"alice@example.com", "bob@example.com"}
    assert set(expansion.remote) <= {"far@remote.example"}
    assert {f.status for f in expansion.failures} <= {UNKNOWN_MAILBOX, ALIAS_LOOP}
    if start in ("alice", "bob") and start not in graph:
        assert addresses == [f"{start}@example.com"]
    assert expansion.mailboxes or expansion.remote or expansion.failures


@pytest.mark.parametrize("delimiter", ["+", "-", ""])
def test_plus_addressing_in_expansion_follows_the_delimiter(
    make_router: Router, delimiter: str
) -> None:
    router = make_router(delimiter=delimiter)
    tagged = router.expand("alice-x@example.com")
    if delimiter == "-":
        assert tagged.mailboxes == (ALICE,)
    else:
        assert tagged.mailboxes == () and tagged.failures[0].status == UNKNOWN_MAILBOX
