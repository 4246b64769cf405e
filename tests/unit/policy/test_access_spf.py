"""The spf condition: the SPF result of MAIL FROM, at the mail, rcpt, data and end stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from hato.config import RULE_SPF_RESULTS, ConfigError, load_settings, settings_to_toml
from hato.mailauth import SPF_RESULTS
from hato.policy import AccessPolicy, Facts


def load(tmp_path: Path, text: str) -> AccessPolicy:
    path = tmp_path / "hato.toml"
    path.write_text(f'[server]\nhostname = "mx.example.org"\n[policy]\n{text}\n', "utf-8")
    settings = load_settings(path)
    return AccessPolicy(
        settings.policy,
        hostname=settings.server.hostname,
        local_domains=settings.server.local_domains,
    )


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return {p.key: p.message for p in caught.value.problems}


def test_the_words_are_rfc_7208s() -> None:
    assert RULE_SPF_RESULTS == SPF_RESULTS


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data", "end"])
def test_matches_the_listed_results(tmp_path: Path, stage: str) -> None:
    rules = load(tmp_path, f'{stage} = [{{ action = "reject", spf = ["fail", "permerror"] }}]')
    refused = rules.check(stage, Facts(client_ip="192.0.2.1", sender="a@example.com", spf="fail"))
    assert refused is not None
    assert refused.reason == f"policy rule {stage}[0]: spf = fail"
    assert refused.reply.code // 100 == 5
    for other in ("pass", "softfail", "none", "temperror"):
        assert rules.check(stage, Facts(client_ip="192.0.2.1", spf=other)) is None
    # Not checked (a trusted or authenticated client): the rule never matches.
    assert rules.check(stage, Facts(client_ip="192.0.2.1", spf=None)) is None


def test_one_word_and_case(tmp_path: Path) -> None:
    rules = load(tmp_path, 'mail = [{ action = "defer", spf = "TempError" }]')
    refused = rules.check("mail", Facts(client_ip="192.0.2.1", spf="temperror"))
    assert refused is not None and refused.reply.code // 100 == 4


@pytest.mark.parametrize("stage", ["connect", "helo"])
def test_refused_before_mail(tmp_path: Path, stage: str) -> None:
    found = problems(tmp_path, f'{stage} = [{{ action = "reject", spf = "fail" }}]')
    assert found == {
        f"policy.{stage}[0].spf": "spf is known from MAIL FROM on: use it in mail, rcpt, data"
        " or end"
    }


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{ action = "reject", spf = "hardfail" }', "policy.mail[0].spf"),
        ('{ action = "reject", spf = ["fail", "bogus"] }', "policy.mail[0].spf[1]"),
        ('{ action = "reject", spf = 1 }', "policy.mail[0].spf"),
    ],
)
def test_bad_results(tmp_path: Path, text: str, key: str) -> None:
    found = problems(tmp_path, f"mail = [{text}]")
    assert list(found) == [key]
    assert "expected" in found[key]


def test_settings_written_back_read_again(tmp_path: Path) -> None:
    path = tmp_path / "hato.toml"
    path.write_text(
        '[server]\nhostname = "mx.example.org"\n[policy]\n'
        'rcpt = [{ action = "reject", spf = ["fail", "softfail"] }]\n',
        "utf-8",
    )
    settings = load_settings(path)
    assert settings.policy.rcpt[0].spf == ("fail", "softfail")
    again = tmp_path / "again.toml"
    again.write_text(settings_to_toml(settings), "utf-8")
    assert load_settings(again).policy.rcpt == settings.policy.rcpt
