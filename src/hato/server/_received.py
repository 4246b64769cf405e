"""What the session knows of its client, and RFC 3848's with-protocol name from it (the
``Received:`` field itself is the pipeline's ``ReceivedField``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientFacts", "protocol_name"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientFacts:
    ip: str
    name: str | None  # reverse DNS, forward-confirmed; None when unknown
    helo: str
    extended: bool
    tls: str | None  # "TLSv1.3 TLS_AES_256_GCM_SHA384" once TLS is up
    auth: str | None  # authenticated user


def protocol_name(facts: ClientFacts, *, smtputf8: bool) -> str:
    """RFC 3848 (and RFC 6531 3.7.3 for UTF8SMTP): SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA."""
    if not facts.extended:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if facts.tls else "") + ("A" if facts.auth else "")
