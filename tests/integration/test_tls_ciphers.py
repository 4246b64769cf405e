"""Which TLS 1.2 cipher suites each listener offers, asked by a real TLS client.

Submission (STARTTLS) and implicit TLS take AEAD suites only (Mozilla's "intermediate"
profile); port 25's STARTTLS stays broader, since opportunistic TLS with an old server
beats plain text (RFC 7435). TLS 1.3 is offered everywhere.
"""

from __future__ import annotations

import signal
import smtplib
import ssl
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

# ECDHE with CBC: what Python's and OpenSSL's defaults still offer, and the profile drops.
CBC_ONLY = (
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:"
    "ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
)
AEAD = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"
TIMEOUT = 10


def client_context(ciphers: str | None, *, tls13: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's certificate is self-signed
    if not tls13:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def negotiate(hato: HatoProcess, listener: str, context: ssl.SSLContext) -> tuple[str, str]:
    """(version, cipher) a handshake on ``listener`` settled on; ssl.SSLError if none."""
    if listener == "implicit TLS":
        with smtplib.SMTP_SSL(
            "127.0.0.1", hato.tls_port, context=context, timeout=TIMEOUT
        ) as client:
            assert client.ehlo()[0] == 250
            return _session(client)
    port = hato.port if listener == "port 25" else hato.submission_port
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.starttls(context=context)[0] == 220
        return _session(client)


def _session(client: smtplib.SMTP) -> tuple[str, str]:
    sock = client.sock
    assert isinstance(sock, ssl.SSLSocket)
    cipher = sock.cipher()
    assert cipher is not None
    return str(sock.version()), cipher[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HatoProcess]:
    from conftest import HatoProcess

    process = HatoProcess(tmp_path_factory.mktemp("ciphers") / "data", accept_all=False)
    process.start()
    yield process
    process.close()


@pytest.mark.parametrize("listener", ["submission", "implicit TLS"])
def test_submission_and_implicit_tls_refuse_cbc_suites(server: HatoProcess, listener: str) -> None:
    with pytest.raises(ssl.SSLError):
        negotiate(server, listener, client_context(CBC_ONLY))


def test_port_25_still_takes_a_cbc_suite(server: HatoProcess) -> None:
    version, cipher = negotiate(server, "port 25", client_context(CBC_ONLY))
    assert version == "TLSv1.2"
    assert cipher in CBC_ONLY.split(":")


@pytest.mark.parametrize("listener", ["port 25", "submission", "implicit TLS"])
def test_every_listener_takes_aead_on_tls_1_2_and_tls_1_3(
    server: HatoProcess, listener: str
) -> None:
    version, cipher = negotiate(server, listener, client_context(AEAD))
    assert (version, cipher in AEAD.split(":")) == ("TLSv1.2", True)
    version, _ = negotiate(server, listener, client_context(None, tls13=True))
    assert version == "TLSv1.3"


def test_what_submission_offers_is_the_intermediate_profile(server: HatoProcess) -> None:
    """Each TLS 1.2 suite a client might ask for, one at a time: only AEAD ones pass."""
    offered = []
    for suite in ssl.create_default_context().get_ciphers():
        if suite["protocol"] != "TLSv1.2" or "ECDSA" not in suite["name"]:
            continue  # the self-signed certificate has an ECDSA key
        try:
            negotiate(server, "submission", client_context(suite["name"]))
        except ssl.SSLError:
            continue
        offered.append(suite["name"])
    assert offered, "no TLS 1.2 suite at all"
    assert all(("GCM" in name or "CHACHA20" in name) for name in offered), offered


def test_after_a_reload_each_listener_keeps_its_suites(
    hato_factory: Callable[..., HatoProcess],
) -> None:
    """SIGHUP moves handshakes onto new contexts; each listener's onto one of its kind."""
    hato = hato_factory(accept_all=False)
    hato.start()
    loaded = len(hato.events("tls_reloaded"))
    hato.signal(signal.SIGHUP)
    hato.poll(lambda: len(hato.events("tls_reloaded")) > loaded, what="the reload")
    for listener in ("submission", "implicit TLS"):
        with pytest.raises(ssl.SSLError):
            negotiate(hato, listener, client_context(CBC_ONLY))
        assert negotiate(hato, listener, client_context(AEAD))[0] == "TLSv1.2"
    assert negotiate(hato, "port 25", client_context(CBC_ONLY))[0] == "TLSv1.2"
