"""Certificate facts from real certificates made here with ``cryptography``."""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hato.diag import certificate_facts, name_matches

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


def make_cert(
    names: list[str], *, days: int = 90, start_offset: int = -1, issuer_cn: str | None = None
) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "x")])
    signer = key
    issuer = subject
    if issuer_cn is not None:
        signer = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    start = NOW + datetime.timedelta(days=start_offset)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_self_signed_valid_matching() -> None:
    facts = certificate_facts(
        make_cert(["mx.example.com", "192.0.2.7"]),
        "mx.example.com",
        tls_version="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256",
        now=NOW,
    )
    assert facts.self_signed is True
    assert facts.name_matches is True
    assert facts.names == ("mx.example.com", "192.0.2.7")
    assert facts.subject == "CN=mx.example.com"
    assert facts.days_left == 89  # valid from a day before NOW, for 90 days
    assert len(facts.fingerprint_sha256.split(":")) == 32


def test_expired_mismatched_and_issued_by_another() -> None:
    der = make_cert(["other.example.com"], days=10, start_offset=-30, issuer_cn="Some CA")
    facts = certificate_facts(der, "mx.example.com", tls_version=None, cipher=None, now=NOW)
    assert facts.days_left < 0
    assert facts.name_matches is False
    assert facts.self_signed is False
    assert facts.issuer == "CN=Some CA"


def test_name_matching_rules() -> None:
    assert name_matches("mx.example.com", ("*.example.com",))
    assert not name_matches("a.mx.example.com", ("*.example.com",))
    assert not name_matches("example.com", ("*.example.com",))
    assert not name_matches("mx.example.com", ("*.com",))
    assert name_matches("MX.Example.com.", ("mx.example.com",))
    assert name_matches("192.0.2.7", ("192.0.2.7",))
    assert not name_matches("192.0.2.8", ("192.0.2.7", "*.example.com"))
