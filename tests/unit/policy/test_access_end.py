"""The end stage's rules: the message-check conditions dkim, dmarc, dmarc_policy, arc."""

from __future__ import annotations

from pathlib import Path

import pytest

from hato.config import ConfigError, load_settings, settings_to_toml
from hato.policy import STAGES, AccessPolicy, Facts


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


FAILED = Facts(client_ip="192.0.2.1", dkim="fail", dmarc="fail", dmarc_policy="reject", arc="none")


def test_end_is_a_stage() -> None:
    assert STAGES[-1] == "end"


def test_dmarc_reject_rule_with_default_reply(tmp_path: Path) -> None:
    rules = load(tmp_path, 'end = [{ action = "reject", dmarc = "fail", dmarc_policy = "reject" }]')
    refused = rules.check("end", FAILED)
    assert refused is not None
    assert str(refused.reply) == "550 5.7.1 Message rejected"
    assert refused.rule == "end[0]"
    assert refused.reason == "policy rule end[0]: dmarc = fail, dmarc_policy = reject"
    quarantine = Facts(client_ip="192.0.2.1", dmarc="fail", dmarc_policy="quarantine")
    assert rules.check("end", quarantine) is None
    assert rules.check("end", Facts(client_ip="192.0.2.1", dmarc="pass")) is None


def test_defer_default_reply(tmp_path: Path) -> None:
    rules = load(tmp_path, 'end = [{ action = "defer", dmarc = "temperror" }]')
    deferred = rules.check("end", Facts(client_ip="192.0.2.1", dmarc="temperror"))
    assert deferred is not None
    assert str(deferred.reply) == "451 4.7.1 Try again later"


def test_any_of_several_results(tmp_path: Path) -> None:
    rules = load(
        tmp_path, 'end = [{ action = "reject", name = "unsigned", dkim = ["fail", "None"] }]'
    )
    assert rules.rules["end"][0].dkim == ("fail", "none")
    for summary, refused in (("fail", True), ("none", True), ("pass", False)):
        found = rules.check("end", Facts(client_ip="192.0.2.1", dkim=summary))
        assert (found is not None) is refused
    found = rules.check("end", Facts(client_ip="192.0.2.1", dkim="none"))
    assert found is not None and found.reason == "policy rule unsigned: dkim = none"


def test_unknown_results_never_match(tmp_path: Path) -> None:
    rules = load(tmp_path, 'end = [{ action = "reject", arc = "none" }]')
    assert rules.check("end", Facts(client_ip="192.0.2.1")) is None  # not checked yet
    assert rules.check("end", Facts(client_ip="192.0.2.1", arc="none")) is not None


def test_arc_pass_accepts_before_a_reject(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        'end = [{ action = "accept", arc = "pass" },'
        ' { action = "reject", dmarc = "fail", reply = "550 5.7.26 DMARC policy says no" }]',
    )
    assert rules.check("end", Facts(client_ip="192.0.2.1", dmarc="fail", arc="pass")) is None
    refused = rules.check("end", FAILED)
    assert refused is not None and str(refused.reply) == "550 5.7.26 DMARC policy says no"


def test_with_other_conditions(tmp_path: Path) -> None:
    rules = load(
        tmp_path, 'end = [{ action = "reject", client = ["192.0.2.0/24"], dkim = "fail" }]'
    )
    assert rules.check("end", FAILED) is not None
    assert rules.check("end", Facts(client_ip="198.51.100.1", dkim="fail")) is None


@pytest.mark.parametrize("stage", ["connect", "helo", "mail", "rcpt", "data"])
@pytest.mark.parametrize("condition", ["dkim", "dmarc", "dmarc_policy", "arc"])
def test_refused_before_the_end(tmp_path: Path, stage: str, condition: str) -> None:
    value = "reject" if condition == "dmarc_policy" else "pass"
    found = problems(tmp_path, f'{stage} = [{{ action = "reject", {condition} = "{value}" }}]')
    assert found == {
        f"policy.{stage}[0].{condition}": f"{condition} is known only once the message has"
        " been received and checked: use it in [policy] end"
    }


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{ action = "reject", dkim = "neutral" }', "policy.end[0].dkim"),
        ('{ action = "reject", dmarc = ["fail", "softfail"] }', "policy.end[0].dmarc[1]"),
        ('{ action = "reject", dmarc_policy = "bounce" }', "policy.end[0].dmarc_policy"),
        ('{ action = "reject", arc = 1 }', "policy.end[0].arc"),
    ],
)
def test_bad_results(tmp_path: Path, text: str, key: str) -> None:
    found = problems(tmp_path, f"end = [{text}]")
    assert list(found) == [key]
    assert "expected" in found[key]


def test_settings_written_back_read_again(tmp_path: Path) -> None:
    path = tmp_path / "hato.toml"
    path.write_text(
        '[server]\nhostname = "mx.example.org"\n[policy]\n'
        'end = [{ action = "reject", dmarc = "fail", dmarc_policy = ["reject"] }]\n',
        "utf-8",
    )
    settings = load_settings(path)
    again = tmp_path / "again.toml"
    again.write_text(settings_to_toml(settings), "utf-8")
    assert load_settings(again).policy.end == settings.policy.end
