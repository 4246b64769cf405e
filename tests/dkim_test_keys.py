"""Keys for the DKIM and ARC tests, made fresh with cryptography, and published in the test
DNS server the way a domain publishes them (RFC 6376 3.6.1)."""

from __future__ import annotations

import base64
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dns_server import DnsServer
from hato.mailauth import SigningKey

_PEM = serialization.Encoding.PEM
_DER = serialization.Encoding.DER
_RAW = serialization.Encoding.Raw


def rsa_key(domain: str, selector: str, bits: int = 2048) -> SigningKey:
    private = rsa.generate_private_key(65537, bits) if bits >= 1024 else _small_rsa(bits)
    return SigningKey(
        domain,
        selector,
        "rsa-sha256",
        private.private_bytes(
            _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        base64.b64encode(
            private.public_key().public_bytes(_DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        ).decode(),
    )


def ed25519_key(domain: str, selector: str) -> SigningKey:
    private = ed25519.Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    return SigningKey(
        domain,
        selector,
        "ed25519-sha256",
        base64.b64encode(seed),
        base64.b64encode(public).decode(),
    )


def publish(dns_server: DnsServer, key: SigningKey, public_key: str | None = None) -> None:
    """The key record at selector._domainkey.domain (another key's p= if given)."""
    kind = "ed25519" if key.algorithm.startswith("ed25519") else "rsa"
    value = f"v=DKIM1; k={kind}; p={key.public_key if public_key is None else public_key}"
    dns_server.add(f"{key.selector}._domainkey.{key.domain}", "TXT", txt(value))


def txt(value: str) -> str:
    """Zone-file text of a TXT record: character-strings of at most 255 octets."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


def _small_rsa(bits: int) -> rsa.RSAPrivateKey:
    """An RSA key below what cryptography will generate (it refuses < 1024 bits), to see
    that verifiers refuse it (RFC 8301 3.2)."""
    e = 65537
    while True:
        p, q = _prime(bits // 2), _prime(bits - bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e and (p * q).bit_length() == bits:
            break
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        d % (p - 1),
        d % (q - 1),
        pow(q, -1, p),
        rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _probably_prime(candidate):
            return candidate


def _probably_prime(n: int, rounds: int = 32) -> bool:
    if n % 2 == 0 or any(n % p == 0 for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31)):
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True
