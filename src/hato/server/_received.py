"""The ``Received:`` trace header (RFC 5321 4.4, RFC 3848 with-protocol names)."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

__all__ = ["ClientFacts", "protocol_name", "received_header"]


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


def _clean(text: str) -> str:
    # The HELO name is the client's text: keep it printable and free of comment syntax.
    return "".join(c if c.isprintable() and c not in "()\\" else "?" for c in text)[:255]


def received_header(
    facts: ClientFacts,
    *,
    hostname: str,
    version: str,
    queue_id: str,
    recipients: list[str],
    smtputf8: bool,
    when: float,
) -> bytes:
    address = f"IPv6:{facts.ip}" if ":" in facts.ip else facts.ip
    lines = [
        f"Received: from {_clean(facts.helo)} ({facts.name or 'unknown'} [{address}])",
        f"\tby {hostname} (Hato {version}) with {protocol_name(facts, smtputf8=smtputf8)}"
        f" id {queue_id}",
    ]
    if facts.tls:
        lines.append(f"\t(using {facts.tls})")
    if len(recipients) == 1:
        # RFC 5321 4.4: "for" only with a single recipient, so the others stay private.
        lines.append(f"\tfor <{recipients[0]}>")
    lines[-1] += "; " + email.utils.formatdate(when, localtime=True)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
