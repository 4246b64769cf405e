"""Access rules as pure decisions: each condition matching and not matching, first match wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from hato.config import ConfigError, load_settings
from hato.policy import AccessPolicy, Facts, dnsbl_listed, dnsbl_query, helo_is_valid


def policy_from(tmp_path: Path, text: str) -> AccessPolicy:
    path = tmp_path / "hato.toml"
    path.write_text(f'[server]\nhostname = "mx.example.org"\n[policy]\n{text}\n', "utf-8")
    settings = load_settings(path)
    return AccessPolicy(
        settings.policy,
        hostname=settings.server.hostname,
        local_domains=settings.server.local_domains,
    )


def test_client_networks_ipv4_and_ipv6(tmp_path: Path) -> None:
    rules = policy_from(
        tmp_path, 'connect = [{ action = "reject", client = ["192.0.2.0/24", "2001:db8::/32"] }]'
    )
    refused = rules.check("connect", Facts(client_ip="192.0.2.77"))
    assert refused is not None
    assert str(refused.reply) == "554 5.7.1 Client host [192.0.2.77] rejected: Access denied"
    assert refused.rule == "connect[0]"
    assert "client 192.0.2.77 in 192.0.2.0/24" in refused.reason
    assert rules.check("connect", Facts(client_ip="2001:db8::5")) is not None
    assert rules.check("connect", Facts(client_ip="::ffff:192.0.2.1")) is not None
    assert rules.check("connect", Facts(client_ip="198.51.100.1")) is None
    assert rules.check("connect", Facts(client_ip="2001:db9::1")) is None


def test_first_match_wins_and_accept_stops_the_stage(tmp_path: Path) -> None:
    rules = policy_from(
        tmp_path,
        """connect = [
  { action = "accept", client = ["192.0.2.10"], name = "friend" },
  { action = "defer", client = ["192.0.2.0/24"], name = "slow-net" },
  { action = "reject", client = ["192.0.2.0/24"] },
]""",
    )
    assert rules.check("connect", Facts(client_ip="192.0.2.10")) is None
    deferred = rules.check("connect", Facts(client_ip="192.0.2.11"))
    assert deferred is not None
    assert deferred.rule == "slow-net"
    assert str(deferred.reply) == "421 4.7.1 Client host [192.0.2.11] rejected: try again later"


def test_custom_reply_is_sent_as_written(tmp_path: Path) -> None:
    rules = policy_from(
        tmp_path,
        'mail = [{ action = "reject", sender = ["spammer.example"],'
        ' reply = "550 5.7.1 No thanks" }]',
    )
    refused = rules.check("mail", Facts(client_ip="192.0.2.1", sender="a@spammer.example"))
    assert refused is not None
    assert str(refused.reply) == "550 5.7.1 No thanks"


@pytest.mark.parametrize(
    ("pattern", "address", "matches"),
    [
        ("user@example.com", "USER@Example.com", True),
        ("user@example.com", "other@example.com", False),
        ("example.com", "anyone@example.com", True),
        ("@example.com", "anyone@EXAMPLE.COM", True),
        ("example.com", "anyone@sub.example.com", False),
        (".example.com", "anyone@sub.example.com", True),
        (".example.com", "anyone@example.com", False),
        ("postmaster@", "postmaster@anywhere.example", True),
        ("postmaster@", "webmaster@anywhere.example", False),
        ("<>", "", True),
        ("<>", "a@b.example", False),
        ("bücher.example", "x@xn--bcher-kva.example", True),
    ],
)
def test_address_patterns(tmp_path: Path, pattern: str, address: str, matches: bool) -> None:
    rules = policy_from(tmp_path, f'mail = [{{ action = "reject", sender = ["{pattern}"] }}]')
    refused = rules.check("mail", Facts(client_ip="192.0.2.1", sender=address))
    assert (refused is not None) == matches
    if matches:
        assert refused is not None
        assert str(refused.reply).startswith(f"554 5.7.1 <{address}>: Sender address rejected")


def test_recipient_patterns_at_rcpt_and_at_data(tmp_path: Path) -> None:
    rules = policy_from(
        tmp_path,
        'rcpt = [{ action = "reject", recipient = ["abuse@"] }]\n'
        'data = [{ action = "defer", recipient = [".lists.example"] }]',
    )
    refused = rules.check(
        "rcpt", Facts(client_ip="192.0.2.1", sender="", recipients=("abuse@x.org",))
    )
    assert refused is not None
    assert (
        str(refused.reply) == "554 5.7.1 <abuse@x.org>: Recipient address rejected: Access denied"
    )
    assert rules.check("rcpt", Facts(client_ip="192.0.2.1", recipients=("a@x.org",))) is None
    deferred = rules.check(
        "data", Facts(client_ip="192.0.2.1", recipients=("a@x.org", "b@big.lists.example"))
    )
    assert deferred is not None
    assert deferred.reply.code == 450
    assert "recipient <b@big.lists.example> matches .lists.example" in deferred.reason


def test_local_sender_must_be_authenticated_or_trusted(tmp_path: Path) -> None:
    rules = policy_from(
        tmp_path,
        'mail = [{ action = "reject", sender_local = true, authenticated = false,'
        " trusted = false }]",
    )
    forged = Facts(client_ip="192.0.2.1", sender="boss@mx.example.org", sender_local=True)
    refused = rules.check("mail", forged)
    assert refused is not None
    assert str(refused.reply) == (
        "553 5.7.1 <boss@mx.example.org>: Sender address rejected: not logged in"
    )
    authenticated = Facts(
        client_ip="192.0.2.1", sender="boss@mx.example.org", sender_local=True, authenticated=True
    )
    assert rules.check("mail", authenticated) is None
    trusted = Facts(
        client_ip="10.0.0.1", sender="b@mx.example.org", sender_local=True, trusted=True
    )
    assert rules.check("mail", trusted) is None
    foreign = Facts(client_ip="192.0.2.1", sender="someone@elsewhere.example")
    assert rules.check("mail", foreign) is None


@pytest.mark.parametrize(
    ("helo", "valid"),
    [
        ("mail.example.com", True),
        ("[192.0.2.1]", True),
        ("[IPv6:2001:db8::1]", True),
        ("localhost", False),
        ("192.0.2.1", False),
        ("[192.0.2.999]", False),
        ("bad_name.example", False),
        ("-x.example.com", False),
    ],
)
def test_helo_validity(helo: str, valid: bool) -> None:
    assert helo_is_valid(helo) is valid


def test_helo_rules(tmp_path: Path) -> None:
    rules = policy_from(
        tmp_path,
        """helo = [
  { action = "reject", helo_valid = false },
  { action = "reject", helo_ours = true },
  { action = "reject", helo = [".dialup.example", "[198.51.100.7]"] },
]""",
    )
    bare = rules.check("helo", Facts(client_ip="192.0.2.1", helo="localhost"))
    assert bare is not None
    assert str(bare.reply) == (
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    )
    ours = rules.check("helo", Facts(client_ip="192.0.2.1", helo="MX.example.org"))
    assert ours is not None
    assert ours.rule == "helo[1]"
    own_ip = rules.check(
        "helo", Facts(client_ip="192.0.2.1", server_ip="203.0.113.5", helo="[203.0.113.5]")
    )
    assert own_ip is not None
    assert own_ip.rule == "helo[1]"
    listed = rules.check("helo", Facts(client_ip="192.0.2.1", helo="host7.dialup.example"))
    assert listed is not None
    assert listed.rule == "helo[2]"
    assert rules.check("helo", Facts(client_ip="192.0.2.1", helo="[198.51.100.7]")) is not None
    assert rules.check("helo", Facts(client_ip="192.0.2.1", helo="mail.friend.example")) is None


def test_dnsbl_rule_names_the_list(tmp_path: Path) -> None:
    rules = policy_from(
        tmp_path, 'connect = [{ action = "reject", dnsbl = ["bl.example", "zen.example"] }]'
    )
    assert rules.zones == ("bl.example", "zen.example")
    listed = Facts(client_ip="192.0.2.2", listed={"zen.example": "127.0.0.2"})
    refused = rules.check("connect", listed)
    assert refused is not None
    assert str(refused.reply) == (
        "554 5.7.1 Service unavailable; Client host [192.0.2.2] blocked using zen.example"
    )
    assert "listed in zen.example (127.0.0.2)" in refused.reason
    assert rules.check("connect", Facts(client_ip="192.0.2.3")) is None


def test_dnsbl_query_names_and_answers() -> None:
    assert dnsbl_query("192.0.2.99", "bl.example") == "99.2.0.192.bl.example"
    assert dnsbl_query("::ffff:192.0.2.99", "bl.example") == "99.2.0.192.bl.example"
    v6 = dnsbl_query("2001:db8::1", "bl.example")
    assert v6 == "1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.bl.example"  # 32 nibbles
    assert dnsbl_query("not-an-ip", "bl.example") is None
    assert dnsbl_listed(["127.0.0.2"]) == "127.0.0.2"
    assert dnsbl_listed(["127.255.255.254"]) is None  # the list refuses to answer us
    assert dnsbl_listed(["192.0.2.1"]) is None
    assert dnsbl_listed([]) is None


def test_a_rule_with_no_condition_matches_everyone(tmp_path: Path) -> None:
    rules = policy_from(tmp_path, 'data = [{ action = "defer", name = "maintenance" }]')
    deferred = rules.check("data", Facts(client_ip="192.0.2.1", sender="a@b.example"))
    assert deferred is not None
    assert deferred.rule == "maintenance"
    assert str(deferred.reply) == "450 4.7.1 Data command rejected: try again later"


def test_conditions_combine_with_and(tmp_path: Path) -> None:
    rules = policy_from(
        tmp_path,
        'rcpt = [{ action = "reject", client = ["192.0.2.0/24"], recipient = ["vip@"] }]',
    )
    assert rules.check("rcpt", Facts(client_ip="192.0.2.1", recipients=("vip@x.org",))) is not None
    assert rules.check("rcpt", Facts(client_ip="192.0.2.1", recipients=("joe@x.org",))) is None
    assert rules.check("rcpt", Facts(client_ip="10.1.1.1", recipients=("vip@x.org",))) is None


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (
            'connect = [{ action = "reject", client = ["10.0.0.0/33"] }]',
            "policy.connect[0].client[0]",
            "not a network",
        ),
        ('connect = [{ action = "deny" }]', "policy.connect[0].action", "must be one of"),
        ('connect = [{ client = ["10.0.0.1"] }]', "policy.connect[0].action", "missing"),
        (
            'mail = [{ action = "reject", sendr = ["x"] }]',
            "policy.mail[0].sendr",
            'did you mean "sender"',
        ),
        (
            'mail = [{ action = "reject", reply = "450 4.7.1 later" }]',
            "policy.mail[0].reply",
            "5xx",
        ),
        (
            'connect = [{ action = "reject", reply = "550 5.7.1 no" }]',
            "policy.connect[0].reply",
            "554 or 421",
        ),
        (
            'rcpt = [{ action = "accept", reply = "550 5.7.1 x" }]',
            "policy.rcpt[0].reply",
            "no reply",
        ),
        (
            'rcpt = [{ action = "reject", reply = "go away" }]',
            "policy.rcpt[0].reply",
            "expected a reply",
        ),
        (
            'helo = [{ action = "reject", helo = ["[1.2.3]"] }]',
            "policy.helo[0].helo[0]",
            "address literal",
        ),
        ('rcpt = [{ action = "reject", dnsbl = ["bad zone"] }]', "policy.rcpt[0].dnsbl[0]", ""),
        ('rcpt = ["reject"]', "policy.rcpt[0]", "expected a table"),
        ("max_connections = -1", "policy.max_connections", "at least 0"),
    ],
)
def test_bad_rules_are_named_by_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        policy_from(tmp_path, text)
    problems = {problem.key: problem.message for problem in caught.value.problems}
    assert key in problems, problems
    assert message in problems[key]
