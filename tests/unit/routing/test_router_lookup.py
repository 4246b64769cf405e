"""LocalRouter.lookup: whether a recipient exists, case by case, in resolution order.

The store fixture (conftest.py) has config domains localhost, mx.test.example and
example.com, the store domain bücher.example, and users alice@example.com (quota 1000),
Bob@example.com and jörg@bücher.example.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from hato.accounts import AccountStore, InvalidInput
from hato.mailauth import Srs
from hato.routing import UNKNOWN_MAILBOX, AliasMatch, LocalRouter, Mailbox, NotLocal, Unknown

HOSTNAME = "mx.test.example"  # as in conftest.py: a config domain, where SRS lives

ALICE = Mailbox("alice@example.com", "example.com", "alice", 1000)
BOB = Mailbox("Bob@example.com", "example.com", "Bob", None)
JOERG = Mailbox("jörg@xn--bcher-kva.example", "xn--bcher-kva.example", "jörg", None)
POSTMASTER = Mailbox("postmaster@mx.test.example", "mx.test.example", "postmaster", None)

Router = Callable[..., LocalRouter]


# --- local domains -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "local"),
    [
        ("example.com", True),
        ("EXAMPLE.COM.", True),
        ("localhost", True),
        ("bücher.example", True),
        ("xn--bcher-kva.example", True),
        ("BÜCHER.example", True),
        ("example.org", False),
        ("[127.0.0.1]", False),
        ("[IPv6:::1]", False),
        ("not a domain", False),
        ("", False),
    ],
)
def test_local_domains(router: LocalRouter, domain: str, local: bool) -> None:
    assert router.is_local_domain(domain) is local


def test_remote_domains_and_address_literals_are_not_local(router: LocalRouter) -> None:
    assert router.lookup("alice@Example.ORG") == NotLocal("example.org")
    assert router.lookup("alice@[192.0.2.1]") == NotLocal("[192.0.2.1]")
    assert router.lookup("alice@bücher.test") == NotLocal("xn--bcher-kva.test")


def test_malformed_addresses_raise(router: LocalRouter) -> None:
    with pytest.raises(InvalidInput):
        router.lookup("no at sign")


# --- users and aliases ---------------------------------------------------------------------


def test_a_user_is_its_canonical_mailbox(router: LocalRouter) -> None:
    assert router.lookup("alice@example.com") == ALICE
    assert router.lookup("<ALICE@Example.Com>") == ALICE
    assert router.lookup("bob@example.com") == BOB
    assert router.lookup('"alice"@example.com') == ALICE


def test_nobody_there_is_unknown(router: LocalRouter) -> None:
    assert router.lookup("carol@example.com") == Unknown("carol@example.com")
    assert router.lookup("carol@Bücher.example") == Unknown("carol@xn--bcher-kva.example")


def test_idn_domains_are_one_domain_in_either_form(router: LocalRouter) -> None:
    assert router.lookup("jörg@bücher.example") == JOERG
    assert router.lookup("JÖRG@xn--bcher-kva.example") == JOERG


def test_an_alias_of_the_full_address_comes_before_a_user(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("alice@example.com", ["bob@example.com"])
    assert router.lookup("Alice@example.com") == AliasMatch(
        "alice@example.com", ("bob@example.com",)
    )


def test_one_alias_to_many_targets(router: LocalRouter, store: AccountStore) -> None:
    store.add_alias("sales@example.com", ["alice@example.com", "carol@partner.example"])
    assert router.lookup("SALES@example.com") == AliasMatch(
        "sales@example.com", ("alice@example.com", "carol@partner.example")
    )


def test_case_sensitive_mode(make_router: Router, store: AccountStore) -> None:
    router = make_router(case_sensitive=True)
    assert router.lookup("alice@example.com") == ALICE
    assert router.lookup("Alice@example.com") == Unknown("Alice@example.com")
    assert router.lookup("bob@example.com") == Unknown("bob@example.com")
    store.add_alias("Sales@example.com", "alice@example.com")
    assert isinstance(router.lookup("Sales@example.com"), AliasMatch)
    assert router.lookup("sales@example.com") == Unknown("sales@example.com")


# --- plus addressing -----------------------------------------------------------------------


def test_plus_addressing_reaches_the_base_user(router: LocalRouter) -> None:
    assert router.lookup("alice+lists@example.com") == ALICE
    assert router.lookup("ALICE+Lists@example.com") == ALICE
    assert router.lookup("alice+a+b@example.com") == ALICE
    assert router.lookup("alice+@example.com") == ALICE


def test_plus_addressing_reaches_the_base_alias_before_the_base_user(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("alice@example.com", "bob@example.com")
    assert router.lookup("alice+x@example.com") == AliasMatch(
        "alice@example.com", ("bob@example.com",)
    )


def test_an_exact_address_with_a_tag_wins_over_its_base(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("alice+spam@example.com", "bob@example.com")
    assert router.lookup("alice+spam@example.com") == AliasMatch(
        "alice+spam@example.com", ("bob@example.com",)
    )
    assert router.lookup("alice+ham@example.com") == ALICE


def test_a_tag_alone_is_not_a_base(router: LocalRouter) -> None:
    assert router.lookup("+alice@example.com") == Unknown("+alice@example.com")


def test_an_empty_delimiter_turns_plus_addressing_off(make_router: Router) -> None:
    router = make_router(delimiter="")
    assert router.lookup("alice+lists@example.com") == Unknown("alice+lists@example.com")
    assert router.lookup("alice@example.com") == ALICE


def test_another_delimiter(make_router: Router) -> None:
    router = make_router(delimiter="-")
    assert router.lookup("alice-lists@example.com") == ALICE
    assert router.lookup("alice+lists@example.com") == Unknown("alice+lists@example.com")


def test_plus_addressing_in_a_quoted_local_part(router: LocalRouter, store: AccountStore) -> None:
    store.add_user('"john doe"@example.com')
    found = router.lookup('"john doe+x"@example.com')
    assert isinstance(found, Mailbox) and found.address == '"john doe"@example.com'


# --- postmaster ----------------------------------------------------------------------------


def test_postmaster_of_every_local_domain_exists_without_a_user(router: LocalRouter) -> None:
    assert router.postmaster == "postmaster@mx.test.example"
    for address in (
        "postmaster@example.com",
        "PostMaster@localhost",
        "postmaster@bücher.example",
        "postmaster@mx.test.example",
        "postmaster+x@example.com",
        "Postmaster",
        "<Postmaster>",
        "POSTMASTER",
    ):
        assert router.lookup(address) == POSTMASTER, address


def test_postmaster_of_a_remote_domain_is_remote(router: LocalRouter) -> None:
    assert router.lookup("postmaster@example.org") == NotLocal("example.org")


def test_postmaster_is_case_insensitive_in_case_sensitive_mode(make_router: Router) -> None:
    assert make_router(case_sensitive=True).lookup("POSTMASTER@example.com") == POSTMASTER


def test_an_explicit_postmaster_alias_or_user_wins(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("postmaster@example.com", "alice@example.com")
    assert router.lookup("postmaster@example.com") == AliasMatch(
        "postmaster@example.com", ("alice@example.com",)
    )
    store.add_user("postmaster@bücher.example")
    found = router.lookup("postmaster@bücher.example")
    assert isinstance(found, Mailbox) and found.domain == "xn--bcher-kva.example"


def test_the_postmaster_mailbox_follows_its_own_alias(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("postmaster@mx.test.example", "alice@example.com")
    expected = AliasMatch("postmaster@mx.test.example", ("alice@example.com",))
    assert router.lookup("postmaster@example.com") == expected
    assert router.lookup("Postmaster") == expected


def test_a_configured_postmaster_user(make_router: Router) -> None:
    router = make_router(postmaster="Alice@Example.com")
    assert router.lookup("postmaster@localhost") == ALICE
    assert router.lookup("postmaster@mx.test.example") == ALICE


def test_a_configured_postmaster_exists_without_a_user_row(make_router: Router) -> None:
    router = make_router(postmaster="admin@example.com")
    admin = Mailbox("admin@example.com", "example.com", "admin", None)
    assert router.lookup("postmaster@localhost") == admin
    assert router.lookup("admin@example.com") == admin
    assert router.lookup("admin+tag@example.com") == admin


def test_a_remote_postmaster_is_an_alias_to_it(make_router: Router) -> None:
    router = make_router(postmaster="hostmaster@isp.example")
    assert router.lookup("postmaster@example.com") == AliasMatch(
        "postmaster@example.com", ("hostmaster@isp.example",)
    )


def test_the_default_postmaster_exists_even_if_the_hostname_is_not_local(
    make_router: Router,
) -> None:
    router = make_router(config_domains=("example.com",))
    assert not router.is_local_domain("mx.test.example")
    assert router.lookup("postmaster@mx.test.example") == POSTMASTER
    assert router.lookup("postmaster@example.com") == POSTMASTER
    assert router.lookup("alice@mx.test.example") == NotLocal("mx.test.example")


def test_a_malformed_postmaster_setting_names_the_key(make_router: Router) -> None:
    with pytest.raises(InvalidInput, match=r"accounts\.postmaster"):
        make_router(postmaster="not an address")


# --- catch-all -----------------------------------------------------------------------------


def test_the_catch_all_takes_what_nothing_else_does(
    router: LocalRouter, store: AccountStore
) -> None:
    store.add_alias("@example.com", "alice@example.com")
    catch_all = AliasMatch("@example.com", ("alice@example.com",))
    assert router.lookup("whoever@example.com") == catch_all
    assert router.lookup("bob@example.com") == BOB
    assert router.lookup("bob+tag@example.com") == BOB
    assert router.lookup("postmaster@example.com") == POSTMASTER
    assert router.lookup("whoever@localhost") == Unknown("whoever@localhost")


# --- live changes --------------------------------------------------------------------------


def test_changes_by_another_process_count_at_the_next_lookup(
    router: LocalRouter, store: AccountStore, tmp_path: Path
) -> None:
    # A second store on the same file stands for `hato user add` in another process.
    with AccountStore(tmp_path / "accounts.sqlite3", config_domains=["example.com"]) as cli:
        cli.add_user("carol@example.com")
        assert router.lookup("carol@example.com") == Mailbox(
            "carol@example.com", "example.com", "carol", None
        )
        cli.add_domain("new.example")
        assert router.is_local_domain("new.example")
        assert router.lookup("dave@new.example") == Unknown("dave@new.example")
        cli.add_alias("dave@new.example", "carol@example.com")
        assert isinstance(router.lookup("dave@new.example"), AliasMatch)
        cli.remove_user("carol@example.com")
        assert router.lookup("carol@example.com") == Unknown("carol@example.com")
        cli.remove_domain("new.example", force=True)
        assert router.lookup("dave@new.example") == NotLocal("new.example")


# -- SRS: bounces to the addresses Hato's forwarding wrote go back to the original sender


def test_a_valid_srs_address_leads_back_to_the_original_sender(
    make_router: Callable[..., LocalRouter],
) -> None:
    srs = Srs(b"0123456789abcdef0123456789abcdef", HOSTNAME)
    router = make_router(reverse_srs=srs.reverse)
    rewritten = srs.forward("carol@partner.example")
    assert router.lookup(rewritten) == AliasMatch(rewritten, ("carol@partner.example",))
    assert router.expand(rewritten).remote == ("carol@partner.example",)


def test_a_forged_or_foreign_srs_address_is_unknown(
    make_router: Callable[..., LocalRouter],
) -> None:
    ours = Srs(b"0123456789abcdef0123456789abcdef", HOSTNAME)
    theirs = Srs(b"another secret, not ours at all", HOSTNAME)
    router = make_router(reverse_srs=ours.reverse)
    forged = theirs.forward("carol@partner.example")
    assert isinstance(router.lookup(forged), Unknown)
    assert router.expand(forged).failures[0].status == UNKNOWN_MAILBOX


def test_without_srs_an_srs_looking_address_is_an_ordinary_one(
    make_router: Callable[..., LocalRouter],
) -> None:
    srs = Srs(b"0123456789abcdef0123456789abcdef", HOSTNAME)
    assert isinstance(make_router().lookup(srs.forward("carol@partner.example")), Unknown)
