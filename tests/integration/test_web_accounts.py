"""Accounts through the HTTP API of a real ``hato serve``: domains (with their DKIM keys)
and users (passwords, quotas) added, changed and removed, each effect read back with the
CLI (``hato domain list``, ``hato user list``, ``hato dkim list``) or a real SMTP login;
the CLI's warnings in the JSON, its refusals as 4xx JSON errors; read-only tokens refused."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

DOMAIN = "accounts.example"
OPTIONS = ("auth.allow_plaintext=true", "auth.failure_delay=0", "auth.max_failures=100")


@pytest.fixture(scope="module")
def server(module_hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    return module_hato_factory("webaccounts", *OPTIONS)


def _token(server: HatoProcess, name: str, *read_only: str) -> dict[str, str]:
    made = server.cli("web", "token", "add", name, *read_only)
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


@pytest.fixture(scope="module")
def api(server: HatoProcess) -> Iterator[httpx.Client]:
    headers = _token(server, "accounts-admin")
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", headers=headers) as c:
        yield c


@pytest.fixture(scope="module")
def reader(server: HatoProcess) -> Iterator[httpx.Client]:
    headers = _token(server, "accounts-reader", "--read-only")
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", headers=headers) as c:
        yield c


@pytest.fixture(scope="module")
def domain(api: httpx.Client) -> dict[str, Any]:
    """DOMAIN, added through the API (with its DKIM key) for the tests that need it."""
    added = api.post("/api/v1/accounts/domains", json={"domain": DOMAIN})
    assert added.status_code == 201, added.text
    return dict(added.json())


def _cli_json(server: HatoProcess, *args: str) -> Any:
    done = server.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _users(server: HatoProcess) -> dict[str, dict[str, Any]]:
    return {u["address"]: u for u in _cli_json(server, "user", "list")}


def _can_log_in(server: HatoProcess, address: str, password: str) -> bool:
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as client:
        client.ehlo("client.example")
        try:
            client.login(address, password)
        except smtplib.SMTPAuthenticationError:
            return False
        return True


def test_a_domain_added_with_its_dkim_key(server: HatoProcess, domain: dict[str, Any]) -> None:
    assert domain["domain"] == DOMAIN and domain["warnings"] == []
    assert domain["done"] == f"added domain {DOMAIN}"
    [key] = domain["dkim"]
    assert key["algorithm"] == "rsa-sha256" and key["made"] is True
    assert key["record"]["name"] == f"{key['selector']}._domainkey.{DOMAIN}"
    assert key["record"]["value"].startswith("v=DKIM1; k=rsa; p=")
    listed = {d["domain"]: d for d in _cli_json(server, "domain", "list")}
    assert listed[DOMAIN]["store"] is True
    keys = [k for k in _cli_json(server, "dkim", "list") if k["domain"] == DOMAIN]
    assert [(k["selector"], k["state"]) for k in keys] == [(key["selector"], "active")]


def test_a_domain_without_a_key_and_one_with_ed25519(
    server: HatoProcess, api: httpx.Client
) -> None:
    bare = api.post("/api/v1/accounts/domains", json={"domain": "nokey.example", "dkim": False})
    assert bare.status_code == 201, bare.text
    assert bare.json()["dkim"] == []
    assert "nokey.example" not in [k["domain"] for k in _cli_json(server, "dkim", "list")]
    both = api.post("/api/v1/accounts/domains", json={"domain": "both.example", "ed25519": True})
    assert [k["algorithm"] for k in both.json()["dkim"]] == ["rsa-sha256", "ed25519-sha256"]
    again = api.post("/api/v1/accounts/domains", json={"domain": "Both.Example"})
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]
    for name in ("nokey.example", "both.example"):
        assert api.delete(f"/api/v1/accounts/domains/{name}").status_code == 200
    listed = [d["domain"] for d in _cli_json(server, "domain", "list")]
    assert "nokey.example" not in listed and "both.example" not in listed


def test_users_added_changed_and_removed(
    server: HatoProcess, api: httpx.Client, domain: dict[str, Any]
) -> None:
    address = f"alice@{DOMAIN}"
    added = api.post(
        "/api/v1/accounts/users",
        json={"address": address, "password": "first-secret", "quota": "1M"},
    )
    assert added.status_code == 201, added.text
    assert added.json()["done"] == f"added user {address} (quota 1M, password set)"
    assert added.json()["user"]["usage"] == 0
    assert _users(server)[address]["quota"] == 1 << 20
    assert _can_log_in(server, address, "first-secret")

    changed = api.put(
        f"/api/v1/accounts/users/{address}", json={"password": "second-secret", "quota": 5000}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["user"]["quota"] == 5000
    assert _users(server)[address]["quota"] == 5000
    assert not _can_log_in(server, address, "first-secret")
    assert _can_log_in(server, address, "second-secret")

    cleared = api.put(f"/api/v1/accounts/users/{address}", json={"password": None, "quota": None})
    assert cleared.status_code == 200, cleared.text
    assert _users(server)[address]["has_password"] is False
    assert _users(server)[address]["quota"] is None

    removed = api.delete(f"/api/v1/accounts/users/{address}")
    assert removed.json() == {"removed": address, "done": f"removed user {address}", "warnings": []}
    assert address not in _users(server)
    assert api.delete(f"/api/v1/accounts/users/{address}").status_code == 404


def test_a_quota_below_what_the_mailbox_holds_is_set_with_a_warning(
    server: HatoProcess, api: httpx.Client, domain: dict[str, Any]
) -> None:
    address = f"full@{DOMAIN}"
    assert api.post("/api/v1/accounts/users", json={"address": address}).status_code == 201
    body = "\r\n".join(["x" * 70] * 30)
    message = f"From: a@example.org\r\nTo: {address}\r\nSubject: big\r\n\r\n{body}\r\n"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail("a@example.org", [address], message)

    def warned() -> list[str] | None:
        # Setting the same quota again is harmless: asked until the usage is counted.
        answer = api.put(f"/api/v1/accounts/users/{address}", json={"quota": 1000})
        assert answer.status_code == 200, answer.text
        return answer.json()["warnings"] or None

    [warning] = server.poll(warned, timeout=15, what="the quota warning")
    assert "over the new quota of 1000" in warning and "452 4.2.2" in warning
    assert _users(server)[address]["quota"] == 1000
    # The CLI says the same, on stderr.
    done = server.cli("user", "quota", address, "500")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"set the quota of {address} to 500"
    assert "warning:" in done.stderr and "over the new quota of 500" in done.stderr
    assert (
        api.put(f"/api/v1/accounts/users/{address}", json={"quota": "1G"}).json()["warnings"] == []
    )


def test_an_alias_that_hides_a_new_mailbox_is_warned_about(
    server: HatoProcess, api: httpx.Client, domain: dict[str, Any]
) -> None:
    source = f"sales@{DOMAIN}"
    alias = {"source": source, "targets": ["elsewhere@example.org"]}
    assert api.post("/api/v1/accounts/aliases", json=alias).status_code == 201
    added = api.post("/api/v1/accounts/users", json={"address": source})
    assert added.status_code == 201, added.text
    [warning] = added.json()["warnings"]
    assert "wins at delivery" in warning and f"hato alias add {source} {source}" in warning
    assert api.delete(f"/api/v1/accounts/aliases/{source}").status_code == 200
    assert api.delete(f"/api/v1/accounts/users/{source}").status_code == 200


def test_a_domain_with_users_is_removed_only_with_force(
    server: HatoProcess, api: httpx.Client
) -> None:
    name = "gone.example"
    assert api.post("/api/v1/accounts/domains", json={"domain": name, "dkim": False}).is_success
    assert api.post("/api/v1/accounts/users", json={"address": f"bob@{name}"}).is_success
    refused = api.delete(f"/api/v1/accounts/domains/{name}")
    assert refused.status_code == 409
    assert "1 user" in refused.json()["error"] and "?force=true" in refused.json()["error"]
    assert f"bob@{name}" in _users(server)
    forced = api.delete(f"/api/v1/accounts/domains/{name}", params={"force": "true"})
    assert forced.status_code == 200, forced.text
    assert forced.json()["done"] == f"removed domain {name} with 1 user(s) and 0 alias(es)"
    [warning] = forced.json()["warnings"]
    assert "1 user and 0 aliases" in warning
    assert f"bob@{name}" not in _users(server)
    assert name not in [d["domain"] for d in _cli_json(server, "domain", "list")]
    assert api.delete(f"/api/v1/accounts/domains/{name}").status_code == 404


def test_a_configured_domain_is_not_removed(server: HatoProcess, api: httpx.Client) -> None:
    refused = api.delete(f"/api/v1/accounts/domains/{server.hostname}")
    assert refused.status_code == 409
    assert "server.local_domains" in refused.json()["error"]


def test_read_only_tokens_may_not_change_accounts(
    api: httpx.Client, reader: httpx.Client, domain: dict[str, Any]
) -> None:
    assert reader.get("/api/v1/accounts/users").status_code == 200
    attempts = [
        reader.post("/api/v1/accounts/domains", json={"domain": "ro.example"}),
        reader.delete(f"/api/v1/accounts/domains/{DOMAIN}"),
        reader.post("/api/v1/accounts/users", json={"address": f"ro@{DOMAIN}"}),
        reader.put(f"/api/v1/accounts/users/ro@{DOMAIN}", json={"quota": 10}),
        reader.delete(f"/api/v1/accounts/users/ro@{DOMAIN}"),
    ]
    for answer in attempts:
        assert answer.status_code == 403, answer.text
        assert "may only read" in answer.json()["error"]
    names = [d["domain"] for d in api.get("/api/v1/accounts/domains").json()["domains"]]
    assert "ro.example" not in names


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "/api/v1/accounts/domains", {}, 400, "domain is required"),
        ("POST", "/api/v1/accounts/domains", {"domain": "bad domain"}, 400, "bad domain"),
        ("POST", "/api/v1/accounts/domains", {"domain": "x.example", "dkim": "yes"}, 400, "dkim"),
        ("POST", "/api/v1/accounts/domains", {"domain": "x.example", "more": 1}, 400, "more"),
        ("POST", "/api/v1/accounts/users", {"address": "nobody"}, 400, "nobody"),
        ("POST", "/api/v1/accounts/users", {"address": "a@not-local.example"}, 409, "not local"),
        (
            "POST",
            "/api/v1/accounts/users",
            {"address": f"q@{DOMAIN}", "quota": "lots"},
            400,
            "size",
        ),
        ("POST", "/api/v1/accounts/users", {"address": f"q@{DOMAIN}", "quota": 0}, 400, "quota"),
        (
            "POST",
            "/api/v1/accounts/users",
            {"address": f"q@{DOMAIN}", "password": 5},
            400,
            "password",
        ),
        (
            "POST",
            "/api/v1/accounts/users",
            {"address": f"q@{DOMAIN}", "password": ""},
            400,
            "empty",
        ),
        ("PUT", f"/api/v1/accounts/users/nobody@{DOMAIN}", {"quota": 10}, 404, "no such user"),
        ("PUT", f"/api/v1/accounts/users/nobody@{DOMAIN}", {}, 400, "password and/or quota"),
        ("PUT", f"/api/v1/accounts/users/nobody@{DOMAIN}", {"name": "x"}, 400, "name"),
        ("DELETE", "/api/v1/accounts/domains/unknown.example", None, 404, "not local"),
        ("DELETE", f"/api/v1/accounts/domains/{DOMAIN}?force=maybe", None, 400, "force"),
    ],
)
def test_bad_input_is_a_4xx_json_error_that_says_what_to_do(
    api: httpx.Client,
    domain: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    words: str,
) -> None:
    answer = api.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
