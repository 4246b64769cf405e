"""The test message ``--send`` delivers: short, plain ASCII, and saying when and from where."""

from __future__ import annotations

import email.utils
import secrets
import socket
import time

__all__ = ["new_envid", "test_message"]


def new_envid() -> str:
    """An ENVID that needs no xtext escaping (RFC 3461 4.4), unique to this run."""
    return f"hato-test-{int(time.time())}-{secrets.token_hex(6)}"


def test_message(
    *, sender: str, recipient: str, hostname: str, target: str, envid: str | None
) -> tuple[bytes, str]:
    """The message (CRLF line ends) and its Message-ID."""
    now = time.time()
    domain = hostname or socket.getfqdn()
    message_id = f"<{envid or new_envid()}@{domain}>"
    date = email.utils.formatdate(now, localtime=True)
    to = recipient if "@" in recipient else f"{recipient}@{target}"
    lines = [
        f"From: <{sender}>",
        f"To: <{to}>",
        "Subject: Test message from hato",
        f"Date: {date}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Auto-Submitted: auto-generated",
        "",
        "This is a test message sent by `hato test`, a diagnostic of mail delivery.",
        "",
        f"Sent:      {date}",
        f"From host: {domain}",
        f"Target:    {target}",
        f"Sender:    {sender}",
        f"Recipient: {recipient}",
    ]
    if envid is not None:
        lines.append(f"ENVID:     {envid}")
    lines += ["", "No action is needed; it can be deleted.", ""]
    return "\r\n".join(lines).encode("utf-8"), message_id
