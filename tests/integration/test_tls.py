"""Server-side TLS against a real ``hato serve``: STARTTLS (RFC 3207), implicit TLS
(RFC 8314), the CVE-2011-0411 command injection, failed handshakes, and certificates
configured or made on first start."""

from __future__ import annotations

import datetime
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

SENDER = "admin@test.com"
# Caught by the test servers' catch-all and held in the spool (see conftest.HOLD_TARGET).
RECIPIENT = "user@localhost"
MESSAGE = b"Subject: over TLS\r\n\r\nsecret body\r\n"


def unverified() -> ssl.SSLContext:
    """A client context for the self-signed certificate (only the tests' own trust)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def stored_received(hato: HatoProcess, queue_id: str) -> bytes:
    message, stored = hato.message(queue_id)
    received, _ = hato.split_received(stored)
    assert message.envelope.tls is not None and message.envelope.tls.startswith("TLSv1.")
    return received


def queued_id(hato: HatoProcess, count: int = 1) -> str:
    queued = hato.poll(lambda: len(hato.events("queued")) >= count and hato.events("queued"))
    return str(queued[count - 1]["queue_id"])


def test_starttls_then_send_is_stored_as_esmtps(hato: HatoProcess) -> None:
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.has_extn("starttls")
        code, _ = client.starttls(context=unverified())
        assert code == 220
        assert client.sock is not None
        version = client.sock.version()  # type: ignore[attr-defined]
        client.ehlo("client.example")
        # RFC 3207 4.2: STARTTLS is not offered again inside TLS.
        assert not client.has_extn("starttls")
        client.sendmail(SENDER, [RECIPIENT], MESSAGE)
    received = stored_received(hato, queued_id(hato))
    assert b" with ESMTPS id " in received
    assert f"(using {version} ".encode() in received
    started = hato.wait_for_event("tls_started")
    assert started["implicit"] is False and started["version"] == version


def test_starttls_again_inside_tls_is_refused(hato: HatoProcess) -> None:
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as client:
        client.starttls(context=unverified())
        client.ehlo("client.example")
        code, text = client.docmd("STARTTLS")
        assert (code, text) == (503, b"5.5.1 Error: TLS already active")


def test_commands_pipelined_after_starttls_are_dropped(
    hato: HatoProcess, smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    """CVE-2011-0411: plaintext sent with STARTTLS must never run inside the TLS session."""
    client = smtp_connect(hato.port)
    assert client.read_reply()[0].startswith("220 ")
    assert client.reply("EHLO client.example").startswith("250 ")
    client.send(b"STARTTLS\r\nMAIL FROM:<x@y>\r\n")
    assert client.read_reply() == ["220 2.0.0 Ready to start TLS"]
    assert not client.buffer  # nothing else was answered in the clear
    tls = unverified().wrap_socket(client.sock, server_hostname="mx.test.example")
    tls.settimeout(10)

    def command(line: str) -> str:
        tls.sendall(line.encode() + b"\r\n")
        data = b""
        while not any(row[3:4] == b" " for row in data.split(b"\r\n")):
            chunk = tls.recv(4096)
            assert chunk, data
            data += chunk
        return data.decode().splitlines()[-1]

    assert command("EHLO client.example").startswith("250 ")
    # Had the smuggled MAIL run, this RCPT would be accepted (or refused as a relay).
    assert command("RCPT TO:<user@localhost>") == "503 5.5.1 Error: need MAIL command"
    assert command("QUIT").startswith("221 ")
    tls.close()
    assert not hato.events("mail")


def test_implicit_tls_listener(hato: HatoProcess) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", hato.tls_port, timeout=10, context=unverified()) as client:
        code, _ = client.ehlo("client.example")
        assert code == 250
        assert not client.has_extn("starttls")  # RFC 8314: already in TLS
        client.sendmail(SENDER, [RECIPIENT], MESSAGE)
    received = stored_received(hato, queued_id(hato))
    assert b" with ESMTPS id " in received and b"(using TLSv1." in received
    assert hato.wait_for_event("tls_started")["implicit"] is True


@pytest.mark.parametrize("mode", ["--tls", "--tlsc"])
def test_swaks(hato: HatoProcess, mode: str) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.skip("SWAKS IS NOT INSTALLED: the swaks TLS interoperability test did not run")
    port = hato.port if mode == "--tls" else hato.tls_port
    result = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{port}", mode, "--to", "postmaster@localhost"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TLS started with cipher" in result.stdout
    assert "Ok: queued as" in result.stdout
    # postmaster is a real mailbox: the message is delivered, not held.
    (delivered,) = hato.poll(
        lambda: list((hato.data_dir / "mailboxes").glob("**/new/*")), what="the delivery"
    )
    received, _ = hato.split_received(delivered.read_bytes().split(b"\r\n", 2)[2])
    assert b" with ESMTPS id " in received and b"(using TLSv1." in received


def test_failed_handshake_closes_only_that_connection(
    hato: HatoProcess, smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    client = smtp_connect(hato.port)
    client.read_reply()
    client.reply("EHLO client.example")
    assert client.reply("STARTTLS") == "220 2.0.0 Ready to start TLS"
    client.send(b"this is no TLS ClientHello\r\n\r\n")
    client.expect_closed()  # perhaps a TLS alert first, then the end
    failed = hato.wait_for_event("tls_failed")
    assert failed["reason"]
    disconnect = hato.wait_for_event("disconnect", session=failed["session"])
    assert disconnect["reason"].startswith("TLS handshake failed")
    # The server goes on serving.
    with smtplib.SMTP("127.0.0.1", hato.port, timeout=10) as next_client:
        next_client.starttls(context=unverified())
        next_client.sendmail(SENDER, [RECIPIENT], MESSAGE)


def make_certificate(directory: Path, hostname: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostname),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hato test"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def presented_subject(port: int, cafile: Path, *, implicit: bool) -> dict[str, str]:
    """The verified certificate's subject, with ``cafile`` as the only trust anchor."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        if not implicit:
            reader = raw.makefile("rb")
            for line in (None, b"EHLO client.example\r\n", b"STARTTLS\r\n"):
                if line is not None:
                    raw.sendall(line)
                while (answer := reader.readline())[3:4] == b"-":
                    pass
            assert answer.startswith(b"220 2.0.0"), answer
        with context.wrap_socket(raw, server_hostname="mail.tls.example") as tls:
            peer = tls.getpeercert()
    assert peer is not None
    return {key: value for rdn in peer["subject"] for key, value in rdn}


def test_configured_certificate_is_presented_and_reloaded_on_sighup(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path / "pki", "mail.tls.example")
    hato = hato_factory(extra_args=("-o", f'tls.certificate="{cert}"', "-o", f'tls.key="{key}"'))
    hato.start()
    for implicit, port in ((False, hato.port), (True, hato.tls_port)):
        subject = presented_subject(port, cert, implicit=implicit)
        assert subject["commonName"] == "mail.tls.example"
        assert subject["organizationName"] == "Hato test"
    assert not (hato.data_dir / "tls").exists()  # nothing self-signed was made

    # A renewed certificate (new key) replaces the files; SIGHUP makes it the one presented.
    old = cert.read_bytes()
    make_certificate(tmp_path / "pki", "mail.tls.example")
    assert cert.read_bytes() != old
    hato.signal(signal.SIGHUP)
    hato.poll(lambda: len(hato.events("tls_reloaded")) >= 2, what="tls_reloaded")
    for implicit, port in ((False, hato.port), (True, hato.tls_port)):
        presented_subject(port, cert, implicit=implicit)  # verifies against the new one


def test_unreadable_certificate_names_the_key(
    hato_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    result = hato_cli(
        "serve",
        "--data-dir",
        tmp_path / "data",
        "--listen",
        "127.0.0.1:0",
        "-o",
        f'tls.certificate="{tmp_path / "missing.pem"}"',
    )
    assert result.returncode != 0
    assert "tls.certificate: cannot read" in result.stderr


def test_self_signed_certificate_is_made_once_and_reused(hato: HatoProcess) -> None:
    cert_path = hato.data_dir / "tls" / "cert.pem"
    key_path = hato.data_dir / "tls" / "key.pem"
    first = cert_path.read_bytes(), key_path.read_bytes()
    assert key_path.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(first[0])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [hato.hostname]
    presented = ssl.get_server_certificate(("127.0.0.1", hato.tls_port))
    assert x509.load_pem_x509_certificate(presented.encode()) == cert
    hato.restart()
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first
