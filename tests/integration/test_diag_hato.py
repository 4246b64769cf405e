"""``hato test`` against a real ``hato serve``: a clean pass, STARTTLS and certificate facts,
AUTH, refusals (unknown user, relay denied), a closed relay, and the loop closed by a
``delivered`` report found in the sender's own mailbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from diag_helpers import codes, hato, run_test

if TYPE_CHECKING:
    from conftest import HatoProcess

HOST = "mx.test.example"  # the test servers' hostname (tests/conftest.py)
USER = "alice@localhost"
PASSWORD = "correct horse battery"


def steps(report: dict[str, Any], host: int = 0) -> dict[str, str]:
    """The last status of each step name of one server."""
    return {step["name"]: step["status"] for step in report["hosts"][host]["steps"]}


@pytest.fixture
def plain(hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    """A server that knows its users (no catch-all): unknown users get 550 5.1.1."""
    process = hato_factory(accept_all=False, name="plain")
    process.start()
    process.add_user(USER, PASSWORD)
    return process


def test_success_against_hato(plain: HatoProcess, tmp_path: Path) -> None:
    status, report, _ = run_test(
        USER,
        "--server",
        f"127.0.0.1:{plain.port}",
        "-o",
        "server.hostname=client.test",
        cwd=tmp_path,
    )
    assert status == 0, report
    assert report["passed"] is True
    assert report["verdict"].startswith("PASS")
    host = report["hosts"][0]
    assert host["banner_host"] == HOST
    assert "Hato" in host["banner_software"]
    assert steps(report) == {
        "connect": "pass",
        "banner": "pass",
        "EHLO": "pass",
        "STARTTLS": "pass",
        "TLS handshake": "warn",  # the self-signed certificate Hato makes on first start
        "MAIL": "pass",
        "RCPT": "pass",
        "RSET": "pass",
        "QUIT": "pass",
    }
    keywords = {extension["keyword"] for extension in host["extensions"]}
    assert {"PIPELINING", "DSN", "AUTH", "SIZE"} <= keywords
    cert = host["certificate"]
    assert cert["self_signed"] is True
    assert cert["tls_version"].startswith("TLS")
    assert cert["expected_name"] == HOST  # an IP was given: the banner's name is checked
    assert cert["name_matches"] is True
    lines = [(entry["direction"], entry["text"]) for entry in host["transcript"]]
    assert ("C", "EHLO client.test") in lines
    assert ("C", "MAIL FROM:<postmaster@client.test>") in lines
    assert ("C", f"RCPT TO:<{USER}>") in lines
    assert ("C", "QUIT") in lines
    assert "cert-self-signed" in codes(report)


def test_unknown_user_is_diagnosed(plain: HatoProcess, tmp_path: Path) -> None:
    status, report, _ = run_test(
        f"nobody@{HOST}", "--server", f"127.0.0.1:{plain.port}", cwd=tmp_path
    )
    assert status == 1
    assert steps(report)["RCPT"] == "fail"
    assert "RSET" in steps(report)
    unknown = [f for f in report["hosts"][0]["findings"] if f["code"] == "unknown-user"]
    assert unknown and "550 5.1.1" in unknown[0]["title"]
    assert "hato user list" in unknown[0]["next_steps"]
    assert report["verdict"].startswith("FAIL")


def test_relay_denied_and_relay_test_closed(plain: HatoProcess, tmp_path: Path) -> None:
    status, report, _ = run_test(
        "someone@elsewhere.example",
        "--server",
        f"127.0.0.1:{plain.port}",
        "--relay-test",
        "--no-tls",
        cwd=tmp_path,
    )
    assert status == 1  # the foreign recipient was refused: the target failed RCPT
    assert "relay-denied" in codes(report)
    checks = report["hosts"][0]["relay_checks"]
    assert [c["form"] for c in checks] == [
        "foreign recipient",
        "percent hack",
        "source route",
        "quoted local part",
        "bang path",
    ]
    assert all(c["verdict"] == "closed" for c in checks), checks
    assert steps(report)["relay test"] == "pass"
    assert steps(report)["STARTTLS"] == "skip"
    sent = [e["text"] for e in report["hosts"][0]["transcript"] if e["direction"] == "C"]
    assert "DATA" not in sent
    assert "RCPT TO:<hato-relay-test%example.net@elsewhere.example>" in sent
    # The step's time covers all five forms: from before the first form's MAIL (the
    # transcript's second MAIL; the first is the test's own transaction).
    host = report["hosts"][0]
    relay = next(step for step in host["steps"] if step["name"] == "relay test")
    mails = [e["seconds"] for e in host["transcript"] if e["text"].startswith("MAIL FROM:")]
    assert len(mails) == 6
    assert relay["started"] <= mails[1]


def relay_findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["code"]: f for f in report["hosts"][0]["findings"] if f["code"].startswith("relay")}


def test_relay_test_says_when_our_own_hato_trusts_the_client(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    # The built-in trusted networks (127.0.0.0/8, ::1), which the test servers leave out.
    trusting = hato_factory(
        accept_all=False,
        name="trusting",
        extra_args=("-o", 'relay.trusted_networks=["127.0.0.0/8"]'),
    )
    trusting.start()
    server = f"127.0.0.1:{trusting.port}"
    status, report, _ = run_test(
        "postmaster@localhost", "--server", server, "--relay-test", "--no-tls",
        "--data-dir", str(trusting.data_dir), cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, report  # warned, not failed: this is no open relay
    checks = report["hosts"][0]["relay_checks"]
    # The foreign recipient and the source route (which RFC 5321 says to ignore) are
    # relayed; the other forms name a local mailbox that is none.
    verdicts = [c["verdict"] for c in checks]
    assert verdicts == ["trusted", "closed", "trusted", "closed", "closed"], checks
    found = relay_findings(report)
    assert list(found) == ["relay-trusted"], found
    trusted = found["relay-trusted"]
    assert trusted["severity"] == "warn"
    assert "127.0.0.1 is in its relay.trusted_networks (127.0.0.0/8)" in trusted["title"]
    assert "554 5.7.1 Relay access denied" in trusted["explanation"]  # what outsiders get
    assert "server.json" in trusted["explanation"]
    assert steps(report)["relay test"] == "warn"
    text = hato("test", "postmaster@localhost", "--server", server, "--relay-test", "--no-tls",
                "--data-dir", str(trusting.data_dir), "--timeout", "10", cwd=tmp_path)  # fmt: skip
    assert "OPEN RELAY" not in text.stdout and "trusted" in text.stdout

    # Without this Hato's data directory, nothing says it is ours: a relay is then an open
    # relay, unless that server trusts this client, and the report says both.
    status, report, _ = run_test(
        "postmaster@localhost", "--server", server, "--relay-test", "--no-tls", cwd=tmp_path
    )
    assert status == 1
    assert report["hosts"][0]["relay_checks"][0]["verdict"] == "open"
    opened = relay_findings(report)["relay-open"]
    assert "for 127.0.0.1: an OPEN RELAY, unless it trusts that address" in opened["title"]


def test_relay_test_after_auth_is_no_open_relay(plain: HatoProcess, tmp_path: Path) -> None:
    status, report, _ = run_test(
        USER, "--server", f"127.0.0.1:{plain.port}", "--relay-test",
        "--auth-user", USER, "--auth-password", PASSWORD, cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, report
    assert report["hosts"][0]["relay_checks"][0]["verdict"] == "trusted"
    assert "open" not in {c["verdict"] for c in report["hosts"][0]["relay_checks"]}
    assert list(relay_findings(report)) == ["relay-authenticated"]


def test_require_tls_fails_on_self_signed(plain: HatoProcess, tmp_path: Path) -> None:
    status, report, _ = run_test(
        USER, "--server", f"127.0.0.1:{plain.port}", "--require-tls", cwd=tmp_path
    )
    assert status == 1
    self_signed = [f for f in report["hosts"][0]["findings"] if f["code"] == "cert-self-signed"]
    assert self_signed[0]["severity"] == "fail"


def test_auth_success_and_wrong_password(plain: HatoProcess, tmp_path: Path) -> None:
    server = f"127.0.0.1:{plain.port}"
    status, report, _ = run_test(
        USER, "--server", server, "--auth-user", USER, "--auth-password", PASSWORD, cwd=tmp_path
    )
    assert status == 0, report
    assert steps(report)["AUTH"] == "pass"
    transcript = json.dumps(report["hosts"][0]["transcript"])
    assert PASSWORD not in transcript
    assert "AUTH PLAIN ****" in transcript
    # The password prompt reads standard input when --auth-password is not given.
    status, report, _ = run_test(
        USER, "--server", server, "--auth-user", USER, cwd=tmp_path, stdin="wrong\n"
    )
    assert status == 1
    assert steps(report)["AUTH"] == "fail"
    assert "auth-failed" in codes(report)


def test_send_dsn_wait_closes_the_loop(plain: HatoProcess, tmp_path: Path) -> None:
    status, report, stderr = run_test(
        f"postmaster@{HOST}",
        "--server",
        f"127.0.0.1:{plain.port}",
        "--from",
        USER,
        "--send",
        "--dsn",
        "--wait=30",
        "--data-dir",
        str(plain.data_dir),
        "-o",
        f"server.hostname={HOST}",
        cwd=tmp_path,
    )
    assert status == 0, (report, stderr)
    assert steps(report)["message"] == "pass"
    assert report["hosts"][0]["queue_id"]
    loop = report["loop"]
    assert loop["outcome"] == "delivered"
    assert loop["envid"] == report["envid"]
    assert loop["recipient"] == f"postmaster@{HOST}"
    assert loop["status"].startswith("2.")
    assert report["verdict"] == "PASS: report received: delivered, with 1 warning"
    sent = [e["text"] for e in report["hosts"][0]["transcript"] if e["direction"] == "C"]
    mail = next(line for line in sent if line.startswith("MAIL FROM"))
    assert f"ENVID={report['envid']}" in mail
    rcpt = next(line for line in sent if line.startswith("RCPT TO"))
    assert "NOTIFY=SUCCESS,FAILURE" in rcpt
    # The test message itself reached the recipient's mailbox.
    listed = plain.cli("mailbox", "list", f"postmaster@{HOST}", "--json")
    assert "Test message from hato" in listed.stdout


def test_wait_needs_a_local_sender(plain: HatoProcess, tmp_path: Path) -> None:
    done = hato(
        "test",
        USER,
        "--server",
        f"127.0.0.1:{plain.port}",
        "--send",
        "--dsn",
        "--wait",
        "--from",
        "someone@elsewhere.example",
        "--data-dir",
        str(plain.data_dir),
        "-o",
        f"server.hostname={HOST}",
    )
    assert done.returncode == 2
    assert "not a mailbox this Hato hosts" in done.stderr
    assert "Example" in done.stderr


def test_readable_report_ends_with_the_verdict(plain: HatoProcess, tmp_path: Path) -> None:
    done = hato(
        "test", USER, "--server", f"127.0.0.1:{plain.port}", "--timeout", "10", cwd=tmp_path
    )
    assert done.returncode == 0
    lines = done.stdout.rstrip().splitlines()
    assert lines[-1] == "PASS: every step passed, with 1 warning"
    assert any("S: 220 mx.test.example ESMTP" in line for line in lines)
    assert "\x1b[" not in done.stdout  # not a terminal: no colour codes


def test_refused_by_hatos_access_policy(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    # Hato refuses the client's address at the banner: hato test says it is the IP, and
    # Hato's event log says which rule.
    refusing = hato_factory(
        config='[policy]\nconnect = [{ action = "reject", client = ["127.0.0.0/8"] }]\n'
    )
    refusing.start()
    status, report, _ = run_test(
        f"postmaster@{HOST}", "--server", f"127.0.0.1:{refusing.port}", cwd=tmp_path
    )
    assert status == 1
    assert codes(report) == ["banner-554"]
    host = report["hosts"][0]
    assert "your IP address" in host["findings"][0]["explanation"]
    banner = next(e["text"] for e in host["transcript"] if e["direction"] == "S")
    assert banner == "554 5.7.1 Client host [127.0.0.1] rejected: Access denied"
    event = refusing.wait_for_event("reject", command="CONNECT")
    assert event["rule"] == "connect[0]"
