"""``hato.server._tls``: the self-signed certificate (made once, renewed when expired or
for another hostname), configured certificates, and reload for new handshakes."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from hato.config import TlsSettings
from hato.server import ServerTls, TlsError, ensure_self_signed, server_context

HOST = "mx.test.example"


def names(cert_path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def handshake(server: ssl.SSLContext) -> bytes:
    """One TLS handshake in memory; returns the DER certificate the server presented."""
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=HOST)
    served = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, served):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    peer = client.getpeercert(binary_form=True)
    assert peer is not None
    return peer


def test_self_signed_is_made_with_a_private_key_and_reused(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path / "tls", HOST)
    assert names(cert_path) == [HOST]
    assert key_path.stat().st_mode & 0o777 == 0o600
    first = cert_path.read_bytes(), key_path.read_bytes()
    assert ensure_self_signed(tmp_path / "tls", HOST) == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first
    assert not [p for p in (tmp_path / "tls").iterdir() if p.name.endswith(".tmp")]


def test_self_signed_is_renewed_when_expired(tmp_path: Path) -> None:
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    cert_path, _ = ensure_self_signed(tmp_path, HOST, now=long_ago)
    expired = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert expired.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    ensure_self_signed(tmp_path, HOST)
    renewed = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert renewed.not_valid_after_utc > datetime.datetime.now(datetime.UTC)
    assert renewed.serial_number != expired.serial_number


def test_self_signed_is_renewed_for_a_new_hostname(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path, HOST)
    ensure_self_signed(tmp_path, "mail.other.example")
    assert names(cert_path) == ["mail.other.example"]


def test_a_damaged_self_signed_certificate_is_replaced(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path, HOST)
    cert_path.write_text("not a certificate")
    ensure_self_signed(tmp_path, HOST)
    assert names(cert_path) == [HOST]


def test_context_refuses_tls_1_1_and_presents_the_certificate(tmp_path: Path) -> None:
    tls = ServerTls(TlsSettings(), hostname=HOST, data_dir=tmp_path)
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.info.self_signed and tls.info.path == tmp_path / "tls" / "cert.pem"
    presented = x509.load_der_x509_certificate(handshake(tls.context))
    assert presented == x509.load_pem_x509_certificate(tls.info.path.read_bytes())


def test_reload_serves_the_new_certificate_even_through_an_old_context(tmp_path: Path) -> None:
    tls = ServerTls(TlsSettings(), hostname=HOST, data_dir=tmp_path)
    old_context = tls.context
    before = handshake(old_context)
    (tmp_path / "tls" / "cert.pem").unlink()  # as if renewed by hand
    tls.reload()
    assert tls.context is not old_context
    after = handshake(tls.context)
    assert after != before
    # A listener built with the first context hands its handshakes to the current one.
    assert handshake(old_context) == after


def test_a_failed_reload_keeps_the_current_context(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path / "pki", "mail.example")
    settings = TlsSettings(certificate=cert_path, key=key_path)
    tls = ServerTls(settings, hostname=HOST, data_dir=tmp_path)
    context = tls.context
    cert_path.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsError) as caught:
        tls.reload()
    assert caught.value.key == "tls.certificate"
    assert tls.context is context
    assert not (tmp_path / "tls").exists()  # a configured certificate makes nothing


def test_configured_certificate_errors_name_the_setting(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path / "a", HOST)
    _, other_key = ensure_self_signed(tmp_path / "b", HOST)
    with pytest.raises(TlsError, match=r"^tls\.certificate: cannot load"):
        server_context(cert_path, other_key)  # the key does not match
    with pytest.raises(TlsError, match=r"^tls\.key: cannot read"):
        server_context(cert_path, tmp_path / "missing.key")
    with pytest.raises(TlsError, match=r"^tls\.certificate: cannot read"):
        server_context(tmp_path / "missing.pem", key_path)
    combined = tmp_path / "combined.pem"
    combined.write_bytes(cert_path.read_bytes() + key_path.read_bytes())
    assert server_context(combined, None)  # key "" means: in the certificate file
    settings = dataclasses.replace(TlsSettings(), certificate=combined)
    assert ServerTls(settings, hostname=HOST, data_dir=tmp_path).info.self_signed is False
