"""``hato test`` against a real Postfix (a private instance on loopback): a known mailbox
passes, an unknown one gets its 550 5.1.1 explained, and ``--send`` delivers the test
message into the Maildir."""

from __future__ import annotations

from diag_helpers import run_test
from postfix_server import DOMAIN, Postfix, postfix_fixture  # noqa: F401


def test_postfix_known_and_unknown_mailbox(postfix: Postfix) -> None:
    server = f"{postfix.host}:{postfix.port}"
    status, report, _ = run_test(f"bob@{DOMAIN}", "--server", server, "--send")
    assert status == 0, report
    host = report["hosts"][0]
    assert host["banner_host"] == DOMAIN
    assert "Postfix" in (host["banner_software"] or "")
    names = [step["name"] for step in host["steps"]]
    assert names[:3] == ["connect", "banner", "EHLO"]
    assert "message" in names
    # TLS is off in this Postfix: the missing STARTTLS is a warning, not a failure.
    assert [f["code"] for f in host["findings"]] == ["no-starttls"]
    assert {"PIPELINING", "SIZE", "DSN"} <= {e["keyword"] for e in host["extensions"]}
    delivered = postfix.wait_for_mailbox("bob")
    assert b"Subject: Test message from hato" in delivered[0]

    status, report, _ = run_test(f"nobody@{DOMAIN}", "--server", server)
    assert status == 1
    findings = report["hosts"][0]["findings"]
    unknown = [f for f in findings if f["code"] == "unknown-user"]
    assert unknown, findings
    assert "550 5.1.1" in unknown[0]["title"]
