"""Signed and sealed test messages, made with dkimpy and keys made here, for comparing
Hato's mail authentication with an independent verifier (``rspamd_server``).

``PeerKey`` is a DKIM key pair with its DNS record: ``rsa_key(...)``/``ed25519_key(...)``
make one, ``publish(dns)`` puts its ``v=DKIM1`` TXT record in a ``DnsServer``.
``message_set(dns, key, other_key)`` publishes ``key`` and returns the cases every
verifier should agree on, each with the result RFC 6376 / RFC 8617 give it:

=================  ===========================================================  ======
name               what                                                         result
=================  ===========================================================  ======
good               signed by ``key`` (relaxed/relaxed, From oversigned)          pass
tampered-body      good, with a line of the body changed after signing          fail
tampered-header    good, with the signed Subject changed after signing          fail
wrong-key          signed by ``other_key``'s private key under ``key``'s name    fail
missing-key        signed under a selector with no key record (NXDOMAIN)        permerror
arc-good           good, then sealed by ``sealer`` at i=1 (cv=none)              arc pass
arc-tampered-body  arc-good with the body changed after sealing                 arc fail
=================  ===========================================================  ======

Domains under ``.test`` are public suffixes here as in the public suffix list's implicit
``*`` rule (``rspamd_server`` tells rspamd so), so ``mail.example.test`` and
``example.test`` align under relaxed DMARC alignment.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dns_server import DnsServer

# The header fields Hato signs (issue 13), From twice: a second From cannot be added unseen.
SIGNED_HEADERS = (
    b"From",
    b"From",
    b"To",
    b"Cc",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"Content-Transfer-Encoding",
    b"Reply-To",
    b"In-Reply-To",
    b"References",
)
RELAXED = (b"relaxed", b"relaxed")
ARC_AUTHSERV_ID = "relay.example.net"  # the ADMD whose Authentication-Results the seal covers
# A fixed signing time keeps messages comparable between runs (no x=, so it never expires).
SIGNING_TIME = 1_700_000_000


@dataclass(frozen=True, slots=True)
class PeerKey:
    """A DKIM key: ``private`` as dkimpy's ``sign`` takes it (PEM for RSA, the base64 seed
    for Ed25519), ``record`` the TXT value published at ``name``."""

    domain: str
    selector: str
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    private: bytes
    record: str

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def publish(self, dns: DnsServer) -> None:
        dns.add(self.name, "TXT", _txt(self.record))

    def with_private(self, other: PeerKey) -> PeerKey:
        """This key's domain, selector and record with ``other``'s private key: signatures
        that claim this key but do not verify with it."""
        return PeerKey(self.domain, self.selector, other.algorithm, other.private, self.record)


def rsa_key(domain: str, selector: str, bits: int = 2048) -> PeerKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    return PeerKey(domain, selector, "rsa-sha256", pem, record)


def ed25519_key(domain: str, selector: str) -> PeerKey:
    private = ed25519.Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    record = f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"
    return PeerKey(domain, selector, "ed25519-sha256", base64.b64encode(seed), record)


def message(
    from_address: str,
    to: str = "bob@hato.test",
    subject: str = "Quarterly figures",
    body: bytes = b"Hello Bob,\r\n\r\nthe figures are attached in spirit.\r\n\r\nAlice\r\n",
    message_id: str = "<figures.1@example.test>",
) -> bytes:
    """A plain RFC 5322 message, CRLF line ends."""
    header = (
        f"From: Alice <{from_address}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
    )
    return header.encode() + b"\r\n" + body


def dkim_sign(message: bytes, key: PeerKey, *, selector: str | None = None) -> bytes:
    """``message`` with a DKIM-Signature by ``key`` prepended (``selector`` overrides s=)."""
    field = dkim.sign(
        message,
        (selector or key.selector).encode(),
        key.domain.encode(),
        key.private,
        canonicalize=RELAXED,
        signature_algorithm=key.algorithm.encode(),
        include_headers=list(SIGNED_HEADERS),
    )
    return bytes(field) + message


def arc_seal(
    message: bytes, key: PeerKey, *, results: str = "dkim=pass", authserv_id: str = ARC_AUTHSERV_ID
) -> bytes:
    """``message`` as a forwarder passes it on: its ``Authentication-Results: authserv_id;
    results`` and, above, an ARC set (i=1, cv=none) sealed by ``key``."""
    received = f"Authentication-Results: {authserv_id}; {results}\r\n".encode() + message
    fields = dkim.arc_sign(
        received,
        key.selector.encode(),
        key.domain.encode(),
        key.private,
        authserv_id.encode(),
        signature_algorithm=key.algorithm.encode(),
        timestamp=SIGNING_TIME,
    )
    if not fields:
        raise ValueError("dkimpy made no ARC set (no Authentication-Results of the authserv-id?)")
    return b"".join(bytes(line) for line in fields) + received


@dataclass(frozen=True, slots=True)
class MessageCase:
    """One test message and what a correct verifier says of it."""

    name: str
    message: bytes
    dkim: str  # the RFC 8601 dkim= word
    arc: str = "none"  # the RFC 8601 arc= word


def message_set(
    dns: DnsServer,
    key: PeerKey,
    other_key: PeerKey,
    *,
    sealer: PeerKey | None = None,
    from_address: str | None = None,
) -> list[MessageCase]:
    """Publish ``key`` (and ``sealer``) in ``dns`` and return the cases of the table above,
    all From ``from_address`` (``alice@`` the key's domain by default). ARC allows only
    rsa-sha256 (RFC 8617 4.1.3): ``sealer`` seals the arc- cases, ``key`` by default when it
    is an RSA key; an Ed25519 ``key`` without a ``sealer`` gets no arc- cases."""
    key.publish(dns)
    missing = f"missing-{key.selector}"
    dns.remove(f"{missing}._domainkey.{key.domain}")
    original = message(from_address or f"alice@{key.domain}")
    good = dkim_sign(original, key)
    cases = [
        MessageCase("good", good, "pass"),
        MessageCase("tampered-body", _tamper_body(good), "fail"),
        MessageCase(
            "tampered-header", good.replace(b"Subject: Quarterly", b"Subject: Annual"), "fail"
        ),
        MessageCase("wrong-key", dkim_sign(original, key.with_private(other_key)), "fail"),
        MessageCase("missing-key", dkim_sign(original, key, selector=missing), "permerror"),
    ]
    if sealer is None and key.algorithm == "rsa-sha256":
        sealer = key
    if sealer is not None:
        if sealer is not key:
            sealer.publish(dns)
        sealed = arc_seal(good, sealer, results=f"dkim=pass header.d={key.domain}")
        cases += [
            MessageCase("arc-good", sealed, "pass", arc="pass"),
            MessageCase("arc-tampered-body", _tamper_body(sealed), "fail", arc="fail"),
        ]
    return cases


def publish_txt(dns: DnsServer, name: str, value: str) -> None:
    """Publish the TXT ``value`` at ``name``, split in strings as a record must be (a DKIM
    key record of another origin, a DMARC record)."""
    dns.add(name, "TXT", _txt(value))


def _tamper_body(message: bytes) -> bytes:
    tampered = message.replace(b"attached in spirit", b"attached in person")
    if tampered == message:
        raise ValueError("nothing to tamper with in the body")
    return tampered


def _txt(value: str) -> str:
    """Zone-file text for a TXT value: quoted strings of at most 255 bytes (RFC 1035 3.3.14)."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join(f'"{chunk}"' for chunk in chunks)
