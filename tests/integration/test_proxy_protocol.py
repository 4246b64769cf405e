"""Hato behind a real HAProxy (PROXY protocol v1 and v2): the client's own address in the
log and the Received header; headers from addresses not listed, and garbage, refused.

Clients bind 127.0.0.2 explicitly, HAProxy reaches Hato from 127.0.0.1 (the listed proxy)
or, for the refusal, from 127.0.0.3 (not listed).
"""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from haproxy_server import HAPROXY, Frontend, HAProxy

if TYPE_CHECKING:
    from conftest import HatoProcess

CLIENT = "127.0.0.2"
UNLISTED_PROXY = "127.0.0.3"
BLOCKED = "blocked@mx.test.example"
MESSAGE = b"Subject: via the proxy\r\n\r\nHello.\r\n"


@pytest.fixture(scope="module")
def proxied(module_hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    return module_hato_factory(
        "proxied",
        'server.proxy_protocol_from=["127.0.0.1/32"]',
        # A rule on the client's address: it must see the client, not the proxy.
        f'policy.rcpt=[{{action = "reject", client = ["{CLIENT}"],'
        f' recipient = ["{BLOCKED}"], name = "no-client-2"}}]',
    )


@pytest.fixture(scope="module")
def haproxy(proxied: HatoProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    if shutil.which(HAPROXY) is None:
        pytest.skip(f"{HAPROXY} is not installed (Debian package haproxy)")
    smtp = ("127.0.0.1", proxied.port)
    instance = HAProxy(
        tmp_path_factory.mktemp("haproxy"),
        [
            Frontend("v2", smtp, "send-proxy-v2"),
            Frontend("v1", smtp, "send-proxy"),
            Frontend("tls", ("127.0.0.1", proxied.tls_port), "send-proxy-v2"),
            Frontend("unlisted", smtp, "send-proxy-v2", source=UNLISTED_PROXY),
        ],
    )
    instance.start()
    yield instance
    instance.stop()


def send_through(port: int, subject: str, *, tls: bool = False) -> str:
    """One message from CLIENT through HAProxy's ``port``; returns the queue ID."""
    data = MESSAGE.replace(b"via the proxy", subject.encode())
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            "127.0.0.1", port, timeout=10, source_address=(CLIENT, 0), context=context
        )
    else:
        client = smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(CLIENT, 0))
    with client:
        client.ehlo("client.example")
        client.mail("sender@client.example")
        client.rcpt("someone@mx.test.example")
        code, text = client.data(data)
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]


@pytest.mark.parametrize("frontend", ["v2", "v1", "tls"])
def test_log_and_received_show_the_client_behind_haproxy(
    proxied: HatoProcess, haproxy: HAProxy, frontend: str
) -> None:
    queue_id = send_through(haproxy.port(frontend), f"through {frontend}", tls=frontend == "tls")
    queued = proxied.wait_for_event("queued", queue_id=queue_id)
    connect = proxied.wait_for_event("connect", session=queued["session"])
    assert connect["client_ip"] == CLIENT
    assert connect["via"].startswith("127.0.0.1:")
    _, stored = proxied.message(queue_id)
    received, _ = proxied.split_received(stored)
    assert f"[{CLIENT}]".encode() in received, received
    assert b"[127.0.0.1]" not in received


def test_access_rules_see_the_client_behind_the_proxy(
    proxied: HatoProcess, haproxy: HAProxy
) -> None:
    with smtplib.SMTP(
        "127.0.0.1", haproxy.port("v2"), timeout=10, source_address=(CLIENT, 0)
    ) as client:
        client.ehlo("client.example")
        client.mail("sender@client.example")
        code, _ = client.rcpt(BLOCKED)
    assert code == 554
    refused = proxied.wait_for_event("reject", rule="no-client-2")
    assert refused["client_ip"] == CLIENT
    # Another client (here one not behind the proxy) is not caught by the rule.
    with smtplib.SMTP(
        proxied.host, proxied.port, timeout=10, source_address=(UNLISTED_PROXY, 0)
    ) as client:
        client.ehlo("client.example")
        client.mail("sender@client.example")
        assert client.rcpt(BLOCKED)[0] == 250


def test_a_proxy_not_listed_is_refused(proxied: HatoProcess, haproxy: HAProxy) -> None:
    before = len(proxied.events("proxy_refused", client_ip=UNLISTED_PROXY))
    with socket.create_connection(
        ("127.0.0.1", haproxy.port("unlisted")), timeout=10, source_address=(CLIENT, 0)
    ) as sock:
        reply = _read_all(sock)
    assert b"421 4.7.0" in reply, reply
    assert b"250" not in reply
    proxied.poll(
        lambda: len(proxied.events("proxy_refused", client_ip=UNLISTED_PROXY)) > before,
        what="proxy_refused for the unlisted proxy",
    )


def test_a_direct_client_not_listed_is_served_as_itself(proxied: HatoProcess) -> None:
    with smtplib.SMTP(proxied.host, proxied.port, timeout=10, source_address=(CLIENT, 0)) as c:
        code, _ = c.ehlo("direct.example")
        assert code == 250
    proxied.poll(
        lambda: [e for e in proxied.events("connect", client_ip=CLIENT) if not e.get("via")],
        what="a connect event from the client itself",
    )


def test_a_forged_header_from_a_client_not_listed_is_refused(proxied: HatoProcess) -> None:
    forged = b"PROXY TCP4 192.0.2.66 127.0.0.1 4000 25\r\nEHLO forged.example\r\n"
    with socket.create_connection(
        (proxied.host, proxied.port), timeout=10, source_address=(CLIENT, 0)
    ) as sock:
        sock.sendall(forged)
        reply = _read_all(sock)
    assert b"421 4.7.0" in reply and b"250" not in reply, reply
    assert not proxied.events("connect", client_ip="192.0.2.66")
    proxied.poll(lambda: proxied.events("proxy_refused", client_ip=CLIENT), what="refusal")


@pytest.mark.parametrize(
    "garbage",
    [
        b"EHLO no-header.example\r\n",
        b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", 60000),
        b"PROXY TCP4 " + b"1" * 200,
    ],
)
def test_a_listed_proxy_with_a_broken_header_is_refused(
    proxied: HatoProcess, garbage: bytes
) -> None:
    before = len(proxied.events("proxy_refused", client_ip="127.0.0.1"))
    with socket.create_connection((proxied.host, proxied.port), timeout=10) as sock:
        sock.sendall(garbage)
        reply = _read_all(sock)
    assert reply == b""  # closed before any greeting: a broken proxy gets no SMTP
    found = proxied.poll(
        lambda: proxied.events("proxy_refused", client_ip="127.0.0.1")[before:],
        what="proxy_refused",
    )
    assert found[0]["reason"]


def test_the_header_may_arrive_in_pieces(proxied: HatoProcess) -> None:
    header = b"PROXY TCP4 192.0.2.77 127.0.0.1 4000 25\r\n"
    with socket.create_connection((proxied.host, proxied.port), timeout=10) as sock:
        for piece in (header[:3], header[3:20], header[20:]):
            sock.sendall(piece)
        banner = sock.recv(200)
        assert banner.startswith(b"220 "), banner
        sock.sendall(b"QUIT\r\n")
    assert proxied.wait_for_event("connect", client_ip="192.0.2.77")["via"]


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a reset too: bytes left unread make one)."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data
