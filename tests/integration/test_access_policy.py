"""The access policy against a real ``hato serve``: clients on different loopback addresses
(127.0.0.2, 127.0.0.3, ... each "another host"), a real DNS server publishing a blocklist,
and the event log answering "why was I refused?" for every refusal."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from dns_server import DnsServer, dns_server_fixture  # noqa: F401

if TYPE_CHECKING:
    from conftest import HatoProcess

READ_TIMEOUT = 10.0


class Client:
    """A raw line-by-line SMTP client bound to a chosen loopback source address."""

    def __init__(self, hato: HatoProcess, source: str) -> None:
        self.sock = socket.create_connection(
            (hato.host, hato.port), timeout=READ_TIMEOUT, source_address=(source, 0)
        )
        self.buffer = b""

    def reply(self) -> str:
        """One whole reply (all its lines), as text with the lines joined by newlines."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buffer:
                data = self.sock.recv(4096)
                if not data:
                    return "\n".join(lines) if lines else "<closed>"
                self.buffer += data
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] != b"-":
                return "\n".join(lines)

    def send(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def start(hato_factory: Callable[..., HatoProcess], config: str, *options: str) -> HatoProcess:
    args = tuple(arg for option in options for arg in ("-o", option))
    hato = hato_factory(config=config, extra_args=args)
    hato.start()
    return hato


def refusals(hato: HatoProcess, **fields: object) -> list[dict[str, object]]:
    hato.wait_for_event("reject", **fields)
    return hato.events("reject", **fields)


def test_denied_network_gets_554_at_the_banner_and_only_quit(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = start(
        hato_factory,
        "[policy]\n"
        'connect = [{ action = "reject", client = ["127.0.0.3/32"], name = "blocked" }]\n',
    )
    denied = Client(hato, "127.0.0.3")
    assert denied.reply() == "554 5.7.1 Client host [127.0.0.3] rejected: Access denied"
    assert denied.send("EHLO x.example").startswith("503 5.5.1")
    assert denied.send("MAIL FROM:<a@example.org>").startswith("503 5.5.1")
    assert denied.send("QUIT").startswith("221")
    denied.close()

    allowed = Client(hato, "127.0.0.2")
    assert allowed.reply().startswith("220 ")
    assert allowed.send("EHLO x.example").startswith("250-")
    allowed.close()

    (event,) = refusals(hato, command="CONNECT")
    assert event["client_ip"] == "127.0.0.3"
    assert event["rule"] == "blocked"
    assert event["reply"] == "554 5.7.1 Client host [127.0.0.3] rejected: Access denied"
    assert "127.0.0.3 in 127.0.0.3/32" in str(event["reason"])
    # The 503s after the refusal are protocol errors of their own, not more policy events.
    assert not hato.events("message_accepted")


def test_delay_reject_refuses_at_rcpt_and_logs_the_envelope(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = start(
        hato_factory,
        "[policy]\ndelay_reject = true\n"
        'connect = [{ action = "reject", client = ["127.0.0.4"] }]\n',
    )
    client = Client(hato, "127.0.0.4")
    assert client.reply().startswith("220 ")
    assert client.send("EHLO probe.example").startswith("250-")
    assert client.send("MAIL FROM:<someone@example.org>").startswith("250 ")
    refused = client.send("RCPT TO:<user@localhost>")
    assert refused == "554 5.7.1 Client host [127.0.0.4] rejected: Access denied"
    client.send("QUIT")
    client.close()
    (event,) = refusals(hato, command="RCPT")
    assert (event["helo"], event["sender"], event["recipient"]) == (
        "probe.example",
        "someone@example.org",
        "user@localhost",
    )
    assert event["rule"] == "connect[0]"


def test_defer_at_connect_closes_with_421(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = start(
        hato_factory, '[policy]\nconnect = [{ action = "defer", client = ["127.0.0.5"] }]\n'
    )
    client = Client(hato, "127.0.0.5")
    assert client.reply() == "421 4.7.1 Client host [127.0.0.5] rejected: try again later"
    assert client.closed()
    client.close()


def test_sender_rules_and_local_sender_needs_auth_or_trust(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    hato = start(
        hato_factory,
        """
[[policy.mail]]
action = "reject"
sender = [".spam.example"]
name = "spam-senders"

[[policy.mail]]
action = "reject"
sender_local = true
authenticated = false
trusted = false
name = "forged-local"
""",
        'relay.trusted_networks=["127.0.0.6/32"]',
    )
    with smtplib.SMTP(hato.host, hato.port, source_address=("127.0.0.2", 0)) as smtp:
        smtp.ehlo("client.example")
        code, text = smtp.mail("bulk@mail.spam.example")
        assert (code, text.decode()) == (
            554,
            "5.7.1 <bulk@mail.spam.example>: Sender address rejected: Access denied",
        )
        code, text = smtp.mail("boss@localhost")
        assert (code, text.decode()) == (
            553,
            "5.7.1 <boss@localhost>: Sender address rejected: not logged in",
        )
        code, _ = smtp.mail("friend@example.org")
        assert code == 250
    # From a trusted network the local sender is fine.
    with smtplib.SMTP(hato.host, hato.port, source_address=("127.0.0.6", 0)) as smtp:
        smtp.ehlo("client.example")
        assert smtp.mail("boss@localhost")[0] == 250
        assert smtp.rcpt("user@localhost")[0] == 250
    forged = refusals(hato, rule="forged-local")
    assert forged[0]["sender"] == "boss@localhost"
    assert forged[0]["command"] == "MAIL"
    assert forged[0]["helo"] == "client.example"
    assert refusals(hato, rule="spam-senders")[0]["client_ip"] == "127.0.0.2"


def test_helo_checks(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = start(
        hato_factory,
        """[policy]
helo = [
  { action = "reject", helo_valid = false },
  { action = "reject", helo_ours = true },
]
""",
    )
    with smtplib.SMTP(hato.host, hato.port, source_address=("127.0.0.2", 0)) as smtp:
        code, text = smtp.ehlo("localhost")
        assert (code, text.decode()) == (
            504,
            "5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
        )
        code, text = smtp.ehlo(hato.hostname)
        assert code == 554
        assert "that is my own name" in text.decode()
        code, text = smtp.ehlo("[127.0.0.1]")  # the address the client connected to
        assert code == 554
        # After the refusals, a proper name works and mail goes through.
        assert smtp.ehlo("client.example")[0] == 250
        assert smtp.sendmail("a@example.org", ["user@localhost"], b"Subject: ok\r\n\r\n.") == {}
    events = refusals(hato, command="EHLO")
    assert [e["rule"] for e in events] == ["helo[0]", "helo[1]", "helo[1]"]
    assert events[0]["helo"] == "localhost"


def test_dnsbl_refuses_a_listed_client_and_names_the_list(
    hato_factory: Callable[..., HatoProcess], dns_server: DnsServer
) -> None:
    # RFC 5782 5: 127.0.0.2 is the address every list must show as listed.
    dns_server.add("2.0.0.127.bl.test", "A", "127.0.0.2")
    dns_server.add("2.0.0.127.bl.test", "TXT", '"listed for testing"')
    dns_server.add("bl.test", "SOA", "ns.bl.test. admin.bl.test. 1 60 60 60 60")
    hato = start(
        hato_factory,
        '[policy]\nconnect = [{ action = "reject", dnsbl = ["bl.test"] }]\n',
        f'dns.nameservers=["{dns_server.address}"]',
    )
    listed = Client(hato, "127.0.0.2")
    assert listed.reply() == (
        "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using bl.test"
    )
    listed.close()
    clean = Client(hato, "127.0.0.7")  # 7.0.0.127.bl.test: NXDOMAIN, not listed
    assert clean.reply().startswith("220 ")
    clean.close()
    (event,) = refusals(hato, command="CONNECT")
    assert "listed in bl.test (127.0.0.2)" in str(event["reason"])


def test_per_ip_concurrent_connections(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = start(hato_factory, "", "policy.max_connections=2")
    first, second = Client(hato, "127.0.0.2"), Client(hato, "127.0.0.2")
    assert first.reply().startswith("220 ")
    assert second.reply().startswith("220 ")
    third = Client(hato, "127.0.0.2")
    assert third.reply() == (
        f"421 4.7.0 {hato.hostname} Error: too many connections from 127.0.0.2"
    )
    assert third.closed()
    other_host = Client(hato, "127.0.0.3")
    assert other_host.reply().startswith("220 ")
    first.send("QUIT")
    first.close()
    # Once a connection has ended, the IP may open another.
    deadline = time.monotonic() + READ_TIMEOUT
    while True:
        again = Client(hato, "127.0.0.2")
        if again.reply().startswith("220 ") or time.monotonic() > deadline:
            break
        again.close()
        time.sleep(0.05)
    assert again.send("QUIT").startswith("221")
    for client in (second, third, other_host, again):
        client.close()
    (event,) = refusals(hato, rule="max_connections")
    assert event["client_ip"] == "127.0.0.2"


def test_trusted_networks_are_not_limited(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = start(
        hato_factory, "", "policy.max_connections=1", 'relay.trusted_networks=["127.0.0.8/32"]'
    )
    clients = [Client(hato, "127.0.0.8") for _ in range(3)]
    assert all(client.reply().startswith("220 ") for client in clients)
    for client in clients:
        client.close()


def test_connection_rate(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = start(hato_factory, "", "policy.connection_rate=2")
    replies = []
    for _ in range(3):
        client = Client(hato, "127.0.0.9")
        replies.append(client.reply())
        client.close()
    assert [r[:3] for r in replies] == ["220", "220", "421"]
    assert refusals(hato, rule="connection_rate")[0]["reply"] == replies[2]


def test_message_and_recipient_rates(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = start(hato_factory, "", "policy.message_rate=2", "policy.recipient_rate=3")
    with smtplib.SMTP(hato.host, hato.port, source_address=("127.0.0.10", 0)) as smtp:
        smtp.ehlo("client.example")
        assert smtp.mail("a@example.org")[0] == 250
        assert [smtp.rcpt(f"u{i}@localhost")[0] for i in range(4)] == [250, 250, 250, 450]
        smtp.rset()
        assert smtp.mail("a@example.org")[0] == 250
        smtp.rset()
        code, text = smtp.mail("a@example.org")
        assert (code, text.decode()) == (
            450,
            "4.7.1 Error: too many messages from 127.0.0.10, slow down",
        )
    assert refusals(hato, rule="recipient_rate")[0]["recipient"] == "u3@localhost"
    assert refusals(hato, rule="message_rate")[0]["sender"] == "a@example.org"


def test_data_rules_apply_to_data_and_to_bdat(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = start(
        hato_factory,
        '[policy]\ndata = [{ action = "defer", recipient = ["list@localhost"], name = "hold" }]\n',
    )
    client = Client(hato, "127.0.0.2")
    client.reply()
    client.send("EHLO client.example")
    client.send("MAIL FROM:<a@example.org>")
    client.send("RCPT TO:<list@localhost>")
    assert client.send("DATA") == "450 4.7.1 Data command rejected: try again later"
    assert client.send("RSET").startswith("250")
    client.send("MAIL FROM:<a@example.org>")
    client.send("RCPT TO:<list@localhost>")
    client.sock.sendall(b"BDAT 5 LAST\r\nhello")
    assert client.reply() == "450 4.7.1 Data command rejected: try again later"
    # Another recipient is not held.
    client.send("MAIL FROM:<a@example.org>")
    client.send("RCPT TO:<other@localhost>")
    client.sock.sendall(b"BDAT 7 LAST\r\nhello\r\n")
    assert client.reply().startswith("250 2.0.0 Ok: queued as ")
    client.send("QUIT")
    client.close()
    assert [e["command"] for e in refusals(hato, rule="hold")] == ["DATA", "BDAT"]


def test_ipv6_client_rule(hato_factory: Callable[..., HatoProcess]) -> None:
    if not socket.has_ipv6:
        pytest.skip("LOUD: this machine has no IPv6, so ::1 rules cannot be tried")
    hato = hato_factory(
        config='[policy]\nconnect = [{ action = "reject", client = ["::1/128"] }]\n',
        listen="[::1]:0",
    )
    try:
        hato.start()
    except AssertionError as error:
        pytest.skip(f"LOUD: cannot listen on ::1 here: {error}")
    sock = socket.create_connection(("::1", hato.port), timeout=READ_TIMEOUT)
    banner = sock.recv(4096)
    sock.close()
    assert banner == b"554 5.7.1 Client host [::1] rejected: Access denied\r\n"


def test_a_blocklist_that_does_not_answer_lists_nobody_and_says_so(
    hato_factory: Callable[..., HatoProcess], dns_server: DnsServer
) -> None:
    dns_server.add("bl.test", "SOA", "ns.bl.test. admin.bl.test. 1 60 60 60 60")
    dns_server.silence("8.0.0.127.bl.test")
    dns_server.servfail("9.0.0.127.bl.test")
    hato = start(
        hato_factory,
        '[policy]\ndnsbl_timeout = 0.5\nconnect = [{ action = "reject", dnsbl = ["bl.test"] }]\n',
        f'dns.nameservers=["{dns_server.address}"]',
    )
    for source in ("127.0.0.8", "127.0.0.9"):
        started = time.monotonic()
        client = Client(hato, source)
        assert client.reply().startswith("220 ")
        assert time.monotonic() - started < 5
        client.close()
    silent = hato.wait_for_event("dnsbl_unavailable", client_ip="127.0.0.8")
    assert silent["zone"] == "bl.test"
    assert "0.5 s" in silent["reason"]
    failing = hato.wait_for_event("dnsbl_unavailable", client_ip="127.0.0.9")
    assert failing["zone"] == "bl.test"
    assert not hato.events("reject")
