"""``SmtpClient`` and STARTTLS against the scripted server: the four policies, a test CA
and certificate made here, and nothing read from before the handshake."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Any

import pytest
from test_smtp_client import (
    HOST,
    MESSAGE,
    Script,
    ScriptedServer,
    codes,
    connect_error,
    run,
    send,
    session,
)

from hato.delivery import SendResult, SmtpClient
from hato.smtp import reply


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    server: ssl.SSLContext
    leaf_der: bytes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a certificate it signed for localhost and 127.0.0.1."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )

    def builder(subject: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("Hato Test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )

    ca = (
        builder("Hato Test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder("localhost", leaf_key)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("pki")
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "leaf.pem", directory / "leaf.key")
    return Pki(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        server=server,
        leaf_der=leaf.public_bytes(serialization.Encoding.DER),
    )


def test_may_stays_plaintext_when_starttls_is_not_offered() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpClient:
        return client

    client, server = run(session(Script(), work, tls="may"))
    assert client.tls_version is None
    assert not client.connection.tls_active
    assert "STARTTLS" not in server.commands


def test_may_uses_tls_with_any_certificate(pki: Pki) -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        return await send(client, "bob@example.com")

    script = Script(tls=pki.server)
    result, server = run(session(script, work, tls="may"))
    assert codes(result)[2] == 250
    assert server.tls_sessions == 1
    assert server.commands[:3] == ["EHLO client.test", "STARTTLS", "EHLO client.test"]
    assert server.messages == [MESSAGE]


def test_tls_details_and_nothing_read_from_before_the_handshake(pki: Pki) -> None:
    script = Script(tls=pki.server, inject_after_220=b"250-injected\r\n250 PIPELINING\r\n")

    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpClient:
        return client

    client, server = run(session(script, work, tls="may"))
    assert client.tls_version is not None and client.tls_version.startswith("TLSv1.")
    assert client.tls_cipher
    assert client.peer_certificate == pki.leaf_der
    assert not client.tls_verified
    # What the server advertises over TLS, not what was slipped in before the handshake.
    assert client.connection.auth_mechanisms == ("PLAIN", "LOGIN")
    assert not any("injected" in line.text for line in client.transcript)
    assert server.commands.count("EHLO client.test") == 2


def test_none_never_starts_tls(pki: Pki) -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> bool:
        return client.connection.starttls_offered

    offered, server = run(session(Script(tls=pki.server), work, tls="none"))
    assert offered
    assert server.tls_sessions == 0


def test_encrypt_fails_when_starttls_is_not_offered() -> None:
    error, server = connect_error(Script(), tls="encrypt")
    assert error.transient
    assert error.enhanced == "4.7.4"
    assert "TLS required but not offered" in str(error)
    assert server.commands == ["EHLO client.test", "QUIT"]


def test_encrypt_fails_when_starttls_is_refused(pki: Pki) -> None:
    script = Script(tls=pki.server, replies={"STARTTLS": "454 4.7.0 TLS not available"})
    error, _server = connect_error(script, tls="encrypt")
    assert error.transient
    assert error.reply == reply(454, "4.7.0", "TLS not available")


def test_encrypt_takes_a_self_signed_certificate(pki: Pki) -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpClient:
        return client

    client, _server = run(session(Script(tls=pki.server), work, tls="encrypt"))
    assert client.connection.tls_active
    assert not client.tls_verified


def test_verify_refuses_a_certificate_from_an_unknown_ca(pki: Pki) -> None:
    error, _server = connect_error(
        Script(tls=pki.server), tls="verify", tls_server_name="localhost"
    )
    assert error.transient
    assert error.enhanced == "4.7.5"
    assert "certificate verify failed" in str(error)


def test_verify_refuses_the_wrong_name(pki: Pki) -> None:
    context = ssl.create_default_context(cadata=pki.ca_pem.decode())
    error, _server = connect_error(
        Script(tls=pki.server), tls="verify", tls_server_name="mx.other.test", ssl_context=context
    )
    assert error.enhanced == "4.7.5"


@pytest.mark.parametrize("server_name", ["localhost", None], ids=["by-name", "by-address"])
def test_verify_passes_with_the_test_ca(pki: Pki, server_name: str | None) -> None:
    context = ssl.create_default_context(cadata=pki.ca_pem.decode())

    async def work(client: SmtpClient, _server: ScriptedServer) -> tuple[bool, Any, str]:
        login = await client.login("user@example.org", "secret")
        return client.tls_verified, login, repr(client.transcript)

    (verified, login, transcript), server = run(
        session(
            Script(tls=pki.server),
            work,
            tls="verify",
            tls_server_name=server_name,
            ssl_context=context,
        )
    )
    assert verified
    assert login == reply(235, "2.7.0", "Authentication successful")
    assert server.auth == [b"\0user@example.org\0secret"]
    assert server.commands[-2].startswith("AUTH PLAIN ")
    token = server.commands[-2].split()[-1]
    assert token not in transcript
    assert "AUTH PLAIN ****" in transcript
