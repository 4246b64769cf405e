"""Certificate facts from the DER the server sent, judged as a verifying client would.

The session itself never verifies (so the conversation goes on and the facts can be
shown whatever they are); these checks say what a verifying client would refuse:
expired or not yet valid, self-signed, or not naming the host connected to.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID

from ._report import Certificate

__all__ = ["certificate_facts", "name_matches", "not_yet_valid", "unverified_context"]


def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def certificate_facts(
    der: bytes,
    expected_name: str,
    *,
    tls_version: str | None,
    cipher: str | None,
    now: datetime.datetime | None = None,
) -> Certificate:
    """Raises ValueError when ``der`` is not a certificate."""
    cert = x509.load_der_x509_certificate(der)
    now = now or datetime.datetime.now(datetime.UTC)
    names = _alt_names(cert)
    not_after = cert.not_valid_after_utc
    return Certificate(
        tls_version=tls_version,
        cipher=cipher,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=names,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=not_after.isoformat(),
        days_left=(not_after - now).days,
        self_signed=cert.issuer == cert.subject and _signs_itself(cert),
        expected_name=expected_name,
        name_matches=name_matches(expected_name, names or _common_names(cert)),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(":"),
    )


def not_yet_valid(cert: Certificate, now: datetime.datetime | None = None) -> bool:
    now = now or datetime.datetime.now(datetime.UTC)
    return datetime.datetime.fromisoformat(cert.not_before) > now


def name_matches(name: str, names: tuple[str, ...]) -> bool:
    """RFC 6125: an exact name, or one wildcard as the whole left-most label only."""
    try:
        wanted_ip = ipaddress.ip_address(name)
    except ValueError:
        wanted_ip = None
    if wanted_ip is not None:
        return any(_same_ip(wanted_ip, candidate) for candidate in names)
    wanted = name.lower().rstrip(".")
    for candidate in names:
        pattern = candidate.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            head, _, rest = wanted.partition(".")
            if head and rest == pattern[2:] and rest.count(".") >= 1:
                return True
    return False


def _same_ip(wanted: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == wanted
    except ValueError:
        return False


def _alt_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        extension = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return ()
    value = extension.value
    assert isinstance(value, x509.SubjectAlternativeName)
    dns_names = value.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in value.get_values_for_type(x509.IPAddress)]
    return (*dns_names, *ips)


def _common_names(cert: x509.Certificate) -> tuple[str, ...]:
    # Only when there is no subjectAltName at all, as old clients still do (RFC 6125 6.4.4).
    return tuple(
        str(attribute.value)
        for attribute in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    )


def _signs_itself(cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
