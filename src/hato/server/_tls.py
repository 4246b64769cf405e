"""The certificate the SMTP service presents: loaded, or self-signed on first start.

What this module promises:

- :class:`ServerTls` always holds usable server :class:`ssl.SSLContext` objects (TLS 1.2 at
  least) or, at start-up, raises :class:`TlsError` naming the setting at fault: one for
  STARTTLS on the plain (port 25) listeners, with OpenSSL's default suites, since any
  encryption beats the plain text an opportunistic client falls back to (RFC 7435); one for
  the submission and implicit TLS listeners, where clients are mail programs that all speak
  a modern TLS, offering TLS 1.2 with AEAD suites only (Mozilla's "intermediate" profile),
  and TLS 1.3.
- With no configured certificate, a self-signed one for the hostname is kept in
  ``DATA/tls/cert.pem`` and ``key.pem`` (0600, as everything in the data directory); it is
  reused across restarts and made anew only when it is missing, unreadable, expired or for
  another hostname.
- :meth:`ServerTls.reload` (SIGHUP) builds a new context for new handshakes; a session
  already in TLS keeps the one it started with. A failed reload keeps the old context.
  Listeners created with an earlier context pick the new one up too: every context
  carries an SNI callback that moves each handshake onto the current context.
"""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..config import TlsSettings

__all__ = [
    "SELF_SIGNED_VALIDITY",
    "SUBMISSION_CIPHERS",
    "ServerTls",
    "TlsError",
    "ensure_self_signed",
    "server_context",
    "session_description",
]

# A self-signed certificate is trusted by no one, so a long life buys nothing; a year
# keeps it from outliving a key that leaked with an old backup.
SELF_SIGNED_VALIDITY = datetime.timedelta(days=365)
# Renew a little before the end, so no handshake ever sees an expired certificate.
RENEW_BEFORE = datetime.timedelta(days=1)
# TLS 1.2 suites of Mozilla's "intermediate" profile (forward secret, AEAD; TLS 1.3 suites
# are all AEAD and not set here), for the listeners that take passwords.
SUBMISSION_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


class TlsError(Exception):
    """The certificate cannot be used; ``key`` is the setting to fix (``tls.certificate``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    path: Path
    self_signed: bool
    not_after: datetime.datetime


def server_context(
    certificate: Path, key: Path | None, *, ciphers: str | None = None
) -> ssl.SSLContext:
    """A server context with the chain in ``certificate`` (and ``key``, if separate);
    ``ciphers`` (OpenSSL's syntax) limits the TLS 1.2 suites."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ciphers is not None:
        context.set_ciphers(ciphers)
    # OpenSSL's errors name neither file, so each is opened first to say which is missing.
    for setting, path in (("tls.certificate", certificate), ("tls.key", key)):
        try:
            if path is not None:
                path.open("rb").close()
        except OSError as error:
            raise TlsError(setting, f"cannot read {path}: {error.strerror or error}") from None
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as error:
        # OpenSSL does not say which of the two files is wrong; the certificate comes first.
        where = f"{certificate}" + (f" with key {key}" if key is not None else "")
        raise TlsError("tls.certificate", f"cannot load {where}: {error}") from None
    return context


def ensure_self_signed(
    directory: Path, hostname: str, *, now: datetime.datetime | None = None
) -> tuple[Path, Path]:
    """The self-signed certificate and key for ``hostname`` in ``directory``, made if needed."""
    now = now or datetime.datetime.now(datetime.UTC)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if _still_good(cert_path, key_path, hostname, now):
        return cert_path, key_path
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # An hour back, for clients whose clocks run a little behind ours.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first: a certificate must never be found beside a key that is not its own.
    _write_atomically(key_path, key_pem, 0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o600)
    return cert_path, key_path


def _still_good(cert_path: Path, key_path: Path, hostname: str, now: datetime.datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if not key_path.is_file():
            return False
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return (
        hostname in names.get_values_for_type(x509.DNSName)
        and cert.not_valid_after_utc - RENEW_BEFORE > now
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is cut by the umask, and the file may exist
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def session_description(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[str, str]:
    """(version, cipher) of an established TLS session, e.g. ("TLSv1.3", "TLS_AES_...")."""
    if ssl_object is None:
        return "TLS", "unknown"
    cipher = ssl_object.cipher()
    return ssl_object.version() or "TLS", cipher[0] if cipher else "unknown"


class ServerTls:
    """The current server contexts; :meth:`reload` replaces them for new handshakes.

    ``context`` is for STARTTLS on the plain listeners, ``submission_context`` for the
    submission and implicit TLS listeners (see the module's docstring).
    """

    def __init__(self, settings: TlsSettings, *, hostname: str, data_dir: Path) -> None:
        self.settings = settings
        self.hostname = hostname
        self.directory = data_dir / "tls"
        self.context, self.submission_context, self.info = self._build()

    def context_for(self, *, submission: bool) -> ssl.SSLContext:
        """The context a listener's handshakes start with (submission or implicit TLS)."""
        return self.submission_context if submission else self.context

    def reload(self) -> CertificateInfo:
        """Load the certificate again; on TlsError the current contexts stay in use."""
        self.context, self.submission_context, self.info = self._build()
        return self.info

    def _build(self) -> tuple[ssl.SSLContext, ssl.SSLContext, CertificateInfo]:
        certificate, key = self.settings.certificate, self.settings.key
        self_signed = certificate is None
        if certificate is None:
            try:
                certificate, key = ensure_self_signed(self.directory, self.hostname)
            except OSError as error:
                raise TlsError(
                    "tls.certificate", f"cannot write a self-signed certificate: {error}"
                ) from None
        context = server_context(certificate, key)
        context.sni_callback = self._current
        submission = server_context(certificate, key, ciphers=SUBMISSION_CIPHERS)
        submission.sni_callback = self._current_submission
        try:
            leaf = x509.load_pem_x509_certificate(certificate.read_bytes())
        except (OSError, ValueError) as error:
            raise TlsError("tls.certificate", f"cannot read {certificate}: {error}") from None
        info = CertificateInfo(certificate, self_signed, leaf.not_valid_after_utc)
        return context, submission, info

    # Called on every ClientHello (with or without SNI): a listener made with an older
    # context hands its handshakes to the newest one of its kind, which is how SIGHUP
    # reaches them. The suites stay those the handshake began with (OpenSSL keeps them
    # when the context changes), so each kind must only ever move to its own kind.

    def _current(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _ctx: object
    ) -> None:
        if connection.context is not self.context:
            connection.context = self.context

    def _current_submission(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _ctx: object
    ) -> None:
        if connection.context is not self.submission_context:
            connection.context = self.submission_context
