"""Golden SMTP dialogs (``tests/dialogs/*.txt``) run against a real ``hato serve`` process.

One file is one scenario, one connection. Each line starts with a prefix, then one space
(or nothing, for an empty line of text):

``# text``
    A comment. Blank lines are ignored too.
``S: text``
    One line the server sends, without its CRLF. ``*`` matches any run of characters
    (queue IDs, the version, dates); everything else must match exactly, and the lines
    must arrive in the order written. The runner reads exactly the lines the file expects,
    each within a deadline, so a server that hangs fails the test.
``C: text``
    One line the client sends, UTF-8 encoded, CRLF appended, in its own write.
``C! bytes``
    Raw bytes, sent as they are with nothing appended. Escapes as in a Python bytes
    literal: ``\\r``, ``\\n``, ``\\t``, ``\\0``, ``\\\\`` and ``\\xHH``. For bare line ends,
    backspace (``\\x08``), telnet IAC (``\\xff``) and the like.
``C+ text`` and ``C+! bytes``
    Like ``C:`` and ``C!``, but held back: they go out in ONE write together with the
    following client lines, up to and including the next ``C:`` or ``C!`` line. This is
    how a pipelined batch is written.
``EOF``
    The server closes the connection here; nothing more may arrive.
``M: text``
    One line of the message the server last acknowledged (``250 ... queued as ID``), as the
    spool holds it behind the Received header, CRLF appended. Together, that message's
    ``M:`` lines must be all of it: this is how dot-stuffing and split writes are checked.

After the last line, no unexpected reply may be waiting. The runner then closes its side
and checks the server's event log for the session: the messages it queued are exactly the
ones the dialog saw ``250 ... queued as ID`` for, and each of them is in the spool (with the
content its ``M:`` lines give, if any).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dialog_script import QUEUED, dialog_files, matches, parse, unescape

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

# Per read: long enough for a slow machine, short enough that a hang fails quickly.
REPLY_TIMEOUT = 5.0


def run_dialog(path: Path, client: SmtpLineClient) -> tuple[list[str], dict[str, bytes]]:
    """Play the dialog; returns the queue IDs acknowledged and the contents the file gives."""
    queued: list[str] = []
    contents: dict[str, bytes] = {}
    for step in parse(path):
        where = f"{path.name}:{step.lineno}"
        if step.kind == "send":
            client.send(step.data)
        elif step.kind == "expect":
            line = client.read_line().decode("utf-8", errors="replace")
            assert matches(step.pattern, line), f"{where}: expected {step.pattern!r}, got {line!r}"
            if found := QUEUED.match(line):
                queued.append(found.group(1))
        elif step.kind == "stored":
            assert queued, f"{where}: M: before any message was acknowledged"
            contents[queued[-1]] = contents.get(queued[-1], b"") + step.data
        else:
            rest = client.expect_closed()
            assert not rest, f"{where}: expected the end of the connection, got {rest!r}"
    assert not client.buffer, f"{path.name}: unexpected bytes after the dialog: {client.buffer!r}"
    return queued, contents


def test_dialog_directory_parses() -> None:
    """Every file is well formed, so a typo fails here rather than as a strange mismatch."""
    for path in dialog_files():
        steps = parse(path)
        assert any(step.kind == "expect" for step in steps), path.name


@pytest.mark.parametrize("path", dialog_files(), ids=lambda path: path.stem)
def test_dialog(
    path: Path,
    shared_hato: HatoProcess,
    smtp_connect: Callable[..., SmtpLineClient],
) -> None:
    client = smtp_connect(shared_hato.port, timeout=REPLY_TIMEOUT)
    local_port = client.local_port
    acknowledged, contents = run_dialog(path, client)
    client.close()

    connects = shared_hato.poll(
        lambda: shared_hato.events("connect", client_port=local_port), what="the connect event"
    )
    session = connects[-1]["session"]
    shared_hato.wait_for_event("disconnect", session=session)
    queued = [event["queue_id"] for event in shared_hato.events("queued", session=session)]
    assert queued == acknowledged, "the server queued messages the client was not told of"
    in_spool = {message.queue_id for message in shared_hato.queue()}
    assert set(acknowledged) <= in_spool
    for queue_id, content in contents.items():
        _, stored = shared_hato.message(queue_id)
        assert shared_hato.split_received(stored)[1] == content, f"{queue_id} as stored"


def test_runner_batches_and_escapes(tmp_path: Path) -> None:
    dialog = tmp_path / "batch.txt"
    dialog.write_text(
        "# a comment\n"
        "S: 220 *\n"
        "C+ MAIL FROM:<a@b.example>\n"
        "C+! RCPT TO:<c@d.example>\\n\n"
        "C+\n"
        "C! \\x08\\xff\\0\\\\\n"
        "C: QUIT\n"
        "EOF\n"
    )
    steps = parse(dialog)
    assert [step.kind for step in steps] == ["expect", "send", "send", "eof"]
    assert steps[1].data == b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\n\r\n\x08\xff\0\\"
    assert steps[2].data == b"QUIT\r\n"
    with pytest.raises(ValueError, match="unknown escape"):
        unescape("\\q")
    dialog.write_text("C+ NOOP\nS: 250 *\n")
    with pytest.raises(ValueError, match="not closed"):
        parse(dialog)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("S: 220 *\nC: NOOP\nS: 251 *\n", "expected '251 \\*'"),
        ("S: 220 *\nC+ NOOP\nC: QUIT\nS: 250 *\nEOF\n", "expected the end of the connection"),
        ("S: 220 *\nC: NOOP\nS: 250 *\nEOF\n", "no reply within"),
    ],
    ids=["wrong-reply", "extra-reply", "no-eof"],
)
def test_runner_notices_a_wrong_dialog(
    tmp_path: Path,
    shared_hato: HatoProcess,
    smtp_connect: Callable[..., SmtpLineClient],
    text: str,
    complaint: str,
) -> None:
    dialog = tmp_path / "wrong.txt"
    dialog.write_text(text)
    client = smtp_connect(shared_hato.port, timeout=0.5)
    with pytest.raises(AssertionError, match=complaint):
        run_dialog(dialog, client)
