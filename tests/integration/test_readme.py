"""The README's walkthrough is a transcript: replay it and expect exactly its replies."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

README = Path(__file__).resolve().parents[2] / "README.md"
REPLY = re.compile(r"^\d{3}[ -]")
QUEUE_ID = re.compile(r"queued as [0-9A-Z]+")


def walkthrough() -> list[str]:
    """The lines of the first ```text block after "telnet 127.0.0.1 2525"."""
    text = README.read_text()
    start = text.index("```text", text.index("telnet 127.0.0.1 2525")) + len("```text\n")
    return text[start : text.index("```", start)].splitlines()


def test_walkthrough_has_both_sides() -> None:
    lines = walkthrough()
    assert lines[0].startswith("220 ")
    assert "QUIT" in lines and "." in lines
    assert any(line.startswith("550 5.1.1") for line in lines)


def test_readme_walkthrough_gets_the_replies_it_shows(
    hato_factory: Callable[..., HatoProcess],
    smtp_connect: Callable[[int], SmtpLineClient],
) -> None:
    hato = hato_factory(accept_all=False)
    hato.hostname = "localhost"  # what the README's machine was called
    hato.start()
    client = smtp_connect(hato.port)
    got: list[str] = []
    expected: list[str] = []
    for line in walkthrough():
        if REPLY.match(line):
            expected.append(QUEUE_ID.sub("queued as *", line))
            if len(got) < len(expected):
                got += [QUEUE_ID.sub("queued as *", r) for r in client.read_reply()]
        else:
            client.command(line)
    assert got == expected
    mailbox = hato.cli("mailbox", "show", "postmaster@localhost", "1")
    assert mailbox.returncode == 0, mailbox.stderr
    assert "Subject: test message" in mailbox.stdout
    assert "This is a test." in mailbox.stdout
