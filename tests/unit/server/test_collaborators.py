"""The session's collaborators on their own: the per-stage checks (over a real account
store and router), the submission rules, AUTH and its SASL exchange, the session registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from session_harness import HOSTNAME, dialog_settings, open_accounts

from hato.accounts import AccountStore
from hato.config import Settings
from hato.events import EventLog
from hato.policy import Decision
from hato.routing import LocalRouter
from hato.server import (
    Authenticator,
    AuthOutcome,
    Checks,
    ClientChecks,
    Credentials,
    SaslExchange,
    Sessions,
    SubmissionRules,
)
from hato.smtp import Limits, Reply, ServerConnection


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dialog_settings(
        tmp_path / "data", **{"accounts.quota_exceeded": "permanent", "auth.failure_delay": 0.0}
    )


@pytest.fixture
def accounts(settings: Settings) -> Iterator[AccountStore]:
    store = open_accounts(settings, accept_all=False)
    store.add_user(f"alice@{HOSTNAME}", "secret", quota=1000)
    store.add_alias(f"team@{HOSTNAME}", f"alice@{HOSTNAME}")
    yield store
    store.close()


def router(settings: Settings, accounts: AccountStore) -> LocalRouter:
    return LocalRouter(accounts, config_domains=settings.server.local_domains, hostname=HOSTNAME)


def gate(
    settings: Settings, accounts: AccountStore, used: int = 0, ip: str = "192.0.2.7"
) -> ClientChecks:
    checks = Checks(
        settings, router=router(settings, accounts), usage=lambda *_: used, log=EventLog()
    )
    conn = ServerConnection(HOSTNAME, Limits())
    return checks.client(conn, client_ip=ip, server_ip="192.0.2.1", session="s1")


def test_rcpt_refuses_unknown_users_relaying_and_full_mailboxes(
    settings: Settings, accounts: AccountStore
) -> None:
    checks = gate(settings, accounts)
    assert checks.rcpt(f"alice@{HOSTNAME}") is None
    assert checks.rcpt(f"team@{HOSTNAME}") is None
    unknown = checks.rcpt(f"bob@{HOSTNAME}")
    assert unknown is not None and unknown.reply.code == 550 and unknown.reason == "unknown user"
    relay = checks.rcpt("someone@remote.example")
    assert relay is not None and str(relay.reply).startswith("554 5.7.1")
    # Quota: from the usage the delivery layer reports, never from the session.
    full = gate(settings, accounts, used=1000).rcpt(f"alice@{HOSTNAME}")
    assert full == Decision(
        reply=Reply(552, "5.2.2", (f"<alice@{HOSTNAME}>: Mailbox full",)),
        reason="mailbox over quota of 1000 bytes",
    )
    assert gate(settings, accounts, used=999).rcpt(f"alice@{HOSTNAME}") is None


def test_a_delayed_connect_refusal_waits_for_rcpt(tmp_path: Path) -> None:
    settings = dialog_settings(
        tmp_path / "data",
        **{
            "policy.delay_reject": True,
            "policy.connect": [{"client": ["192.0.2.0/24"], "action": "reject"}],
        },
    )
    store = open_accounts(settings)
    try:
        checks = gate(settings, store)
        assert checks.connect() is None  # kept
        refusal = checks.rcpt("user@localhost")
        assert refusal is not None and refusal.reply.code >= 500 and refusal.rule
        assert gate(settings, store, ip="198.51.100.1").rcpt("user@localhost") is None
    finally:
        store.close()


def test_connection_limits_count_and_release(tmp_path: Path) -> None:
    settings = dialog_settings(tmp_path / "data", **{"policy.max_connections": 1})
    store = open_accounts(settings)
    try:
        checks = Checks(
            settings, router=router(settings, store), usage=lambda *a: 0, log=EventLog()
        )
        conn = ServerConnection(HOSTNAME, Limits())
        first = checks.client(conn, client_ip="192.0.2.7", server_ip="", session="a")
        second = checks.client(conn, client_ip="192.0.2.7", server_ip="", session="b")
        assert first.admit() is None
        refused = second.admit()
        assert refused is not None and refused.reply.code == 421
        first.close()
        assert checks.client(conn, client_ip="192.0.2.7", server_ip="", session="c").admit() is None
    finally:
        store.close()


def test_submission_rules(settings: Settings, accounts: AccountStore) -> None:
    rules = SubmissionRules(router(settings, accounts), sender_login_match="owned")
    nobody = rules.mail("alice@x.example", user=None, starttls_first=False)
    assert nobody is not None and str(nobody.reply) == "530 5.7.0 Authentication required"
    first = rules.mail("alice@x.example", user=None, starttls_first=True)
    assert first is not None and "STARTTLS" in str(first.reply)
    alice = f"alice@{HOSTNAME}"
    assert rules.mail(alice, user=alice, starttls_first=False) is None
    assert rules.mail(f"team@{HOSTNAME}", user=alice, starttls_first=False) is None
    assert rules.mail("", user=alice, starttls_first=False) is None  # the null sender
    other = rules.mail("ceo@remote.example", user=alice, starttls_first=False)
    assert other is not None and other.reply.code == 553
    anyone = SubmissionRules(router(settings, accounts), sender_login_match="any")
    assert anyone.mail("ceo@remote.example", user=alice, starttls_first=False) is None


def test_sasl_exchange() -> None:
    sasl = SaslExchange()
    assert sasl.start("PLAIN", None) == Reply(334, None, ("",))
    assert sasl.respond("AGFAYgBw") == Credentials("PLAIN", "a@b", "p")  # \0a@b\0p
    assert sasl.start("PLAIN", "eEBiAGFAYgBw") == Credentials("PLAIN", "a@b", None)  # x@b acts
    assert isinstance(sasl.start("LOGIN", None), Reply)
    assert isinstance(sasl.respond("YUBi"), Reply)  # a@b
    assert sasl.respond("cA==") == Credentials("LOGIN", "a@b", "p")
    malformed = sasl.start("PLAIN", "not base64!")
    assert isinstance(malformed, Decision) and malformed.reply.code == 501
    assert isinstance(SaslExchange().respond("x"), Decision)  # no exchange in progress


async def test_authenticator(settings: Settings, accounts: AccountStore) -> None:
    auth = Authenticator(accounts, settings.auth, hostname=HOSTNAME, log=EventLog())
    assert auth.offered(tls=True) == auth.mechanisms != ()
    assert auth.offered(tls=False) == ()  # inside TLS only, by default
    alice = f"alice@{HOSTNAME}"
    ok = await auth.verify(
        Credentials("PLAIN", alice, "secret"), client_ip="192.0.2.7", session="s"
    )
    assert ok.user == alice and ok.reply.code == 235 and ok.refusal is None
    bad = await auth.verify(
        Credentials("PLAIN", alice, "wrong"), client_ip="192.0.2.7", session="s"
    )
    assert bad.user is None and bad.reply.code == 535 and bad.refusal is not None
    assert auth.ban("192.0.2.7") is None
    for _ in range(settings.auth.max_failures + 1):
        await verify(auth, alice, None, "192.0.2.8")
    banned = auth.ban("192.0.2.8")
    assert banned is not None and banned.reply.code == 421
    late = await auth.verify(
        Credentials("PLAIN", alice, "secret"), client_ip="192.0.2.8", session="s"
    )
    assert late.user is None and late.reply.code == 421  # right or wrong, no entry


async def verify(auth: Authenticator, user: str, password: str | None, ip: str) -> AuthOutcome:
    return await auth.verify(Credentials("PLAIN", user, password), client_ip=ip, session="s")


def test_sessions_registry_gives_distinct_ids() -> None:
    sessions = Sessions()
    ids = {sessions.new_id() for _ in range(100)}
    assert len(ids) == 100 and not sessions.stopping and len(sessions) == 0
