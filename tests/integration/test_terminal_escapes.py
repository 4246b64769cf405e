"""Client- and server-controlled text reaches an administrator's terminal escaped.

A hostile client (its EHLO name, junk commands, message headers) and a hostile next hop
(its banner and replies) send terminal escape sequences to a real ``hato serve``; then the
real commands an administrator runs (the server's stderr, ``hato trace``, ``hato queue``,
``hato mailbox``, ``hato test``) must show them as visible ``\\x1b`` text, never as raw
control bytes a terminal would obey. ``--json`` stays JSON, faithful to what was sent.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from scripted_smtp import ScriptedSmtp

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

HATO = Path(sys.executable).with_name("hato")
# Set the window title, ring the bell, clear the screen, a C1 CSI: what a terminal obeys.
ESCAPES = "\x1b]0;PWNED\x07\x1b[2J\u009b31m"
REMOTE = "remote.test.example"
# Any C0 control but tab and line feed, DEL, or a C1 control (U+0080-U+009F).
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(*args: str | Path) -> str:
    """``hato ARGS`` as bytes decoded without newline translation (a CR must show)."""
    done = subprocess.run([str(HATO), *map(str, args)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"Traceback" not in done.stderr, done.stderr
    return done.stdout.decode("utf-8", errors="surrogateescape")


def assert_no_raw_controls(text: str, what: str) -> None:
    found = RAW_CONTROL.search(text)
    assert found is None, f"{what} has a raw {found.group()!r}:\n{text}"


def test_hostile_client_and_next_hop_text_is_escaped_in_every_readable_output(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    port = free_port()
    next_hop = ScriptedSmtp(
        "127.0.0.1",
        port,
        hostname=f"next{ESCAPES}.test",
        replies={f"far@{REMOTE}": [f"451 4.3.0 far{ESCAPES} later"]},
    )
    transports = f'["relay.test.example 127.0.0.1:9", "{REMOTE} 127.0.0.1:{port}"]'
    hato = hato_factory(
        extra_args=(
            "--log-level",
            "debug",
            "-o",
            f"relay.transports={transports}",
            "-o",
            'relay.trusted_networks=["127.0.0.0/8"]',
        )
    )
    with next_hop:
        hato.start()
        client = smtp_connect(hato.port)
        assert client.read_reply()[0].startswith("220 ")
        assert client.reply(f"EHLO evil{ESCAPES}.example").startswith("250 ")
        assert client.reply(f"JUNK{ESCAPES}").startswith("500 ")
        assert client.reply("MAIL FROM:<a@example.com>").startswith("250 ")
        assert client.reply(f"RCPT TO:<postmaster@{hato.hostname}>").startswith("250 ")
        assert client.reply(f"RCPT TO:<far@{REMOTE}>").startswith("250 ")
        assert client.reply("DATA").startswith("354 ")
        client.send(
            b"From: =?utf-8?q?=1B]0;FROM=07?= <a@example.com>\r\n"
            b"Subject: =?utf-8?q?=1B]0;SUBJECT=07?=\r\n"
            b"X-Raw: raw\x1b]0;HEADER\x07 back\x08space\r\n"
            b"\r\n"
            b"body\x1b]0;BODY\x07\r\n.\r\n"
        )
        queued = client.read_reply()[-1]
        assert queued.startswith("250 "), queued
        queue_id = queued.rsplit(" ", 1)[1]
        client.command("QUIT")
        client.read_reply()
        hato.wait_for_event("deferred", queue_id=queue_id)
        hato.wait_for_event("delivered", queue_id=queue_id)
        hato.wait_for_event("disconnect")

        def recorded() -> str | None:
            # The flight recorder writes every half second: poll until the story is whole.
            done = subprocess.run(
                [str(HATO), "trace", queue_id, "--data-dir", str(hato.data_dir)],
                capture_output=True,
                timeout=60,
            )
            text = done.stdout.decode("utf-8", "replace")
            whole = done.returncode == 0 and "EHLO evil" in text and "far\\x1b" in text
            return text if whole and "delivered" in text.lower() else None

        story = hato.poll(recorded, what="the whole story in hato trace")
        outputs = {
            "hato trace": story,
            "hato trace --sender": run("trace", "--sender", "a@", "--data-dir", hato.data_dir),
            "hato queue list": run("queue", "list", "--data-dir", hato.data_dir),
            "hato queue show": run("queue", "show", queue_id, "--data-dir", hato.data_dir),
            "hato mailbox list": run(
                "mailbox", "list", f"postmaster@{hato.hostname}", "--data-dir", hato.data_dir
            ),
            "hato mailbox show": run(
                "mailbox", "show", f"postmaster@{hato.hostname}", "1", "--data-dir", hato.data_dir
            ),
        }
        hato.stop()
    outputs["the server's stderr"] = hato.stderr_path.read_bytes().decode("utf-8", "replace")
    outputs["events.jsonl"] = hato.events_path.read_bytes().decode("utf-8", "replace")
    for what, text in outputs.items():
        assert_no_raw_controls(text, what)
    # Escaped visibly, not dropped: each place still shows what was sent.
    assert "EHLO evil\\x1b]0;PWNED\\x07" in story
    assert "far\\x1b]0;PWNED\\x07" in story  # the next hop's reply in the attempt
    assert "helo=<evil\\x1b]0;PWNED\\x07" in outputs["the server's stderr"]
    assert "far\\x1b]0;PWNED\\x07" in outputs["hato queue list"]
    assert "raw\\x1b]0;HEADER\\x07 back\\x08space" in outputs["hato queue show"]
    assert "\\x1b]0;SUBJECT\\x07" in outputs["hato mailbox list"]
    assert "body\\x1b]0;BODY\\x07" in outputs["hato mailbox show"]
    # The JSON views keep the exact text (JSON escapes it).
    stories = json.loads(run("trace", queue_id, "--json", "--data-dir", hato.data_dir))
    lines = [line["text"] for step in stories["steps"] for line in step.get("transcript", [])]
    assert f"EHLO evil{ESCAPES}.example" in lines
    assert hato.events("helo")[0]["helo"] == f"evil{ESCAPES}.example"


def hostile_next_hop() -> ScriptedSmtp:
    """A server whose banner, EHLO reply and RCPT reply carry escapes and rich markup."""
    return ScriptedSmtp(
        "127.0.0.1",
        free_port(),
        hostname=f"evil{ESCAPES}[/][blink].test",
        replies={"x@victim.test": [f"550 5.1.1 no{ESCAPES} [/bold] such user"]},
    )


def test_hato_test_escapes_a_hostile_servers_text_in_plain_output() -> None:
    with hostile_next_hop() as server:
        done = subprocess.run(
            [str(HATO), "test", f"127.0.0.1:{server.port}", "--to", "x@victim.test", "--no-tls"],
            capture_output=True,
            timeout=60,
        )
    assert b"Traceback" not in done.stderr, done.stderr
    text = done.stdout.decode("utf-8", "surrogateescape")
    assert_no_raw_controls(text, "hato test")
    assert "evil\\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m[/][blink].test" in text
    assert "no\\x1b]0;PWNED\\x07" in text


def test_hato_test_escapes_a_hostile_servers_text_on_a_terminal() -> None:
    """On a terminal the report is drawn by rich: its colours are escapes, the server's not."""
    with hostile_next_hop() as server:
        leader, follower = os.openpty()
        proc = subprocess.Popen(
            [str(HATO), "test", f"127.0.0.1:{server.port}", "--to", "x@victim.test", "--no-tls"],
            stdout=follower,
            stderr=subprocess.PIPE,
            env={**os.environ, "COLUMNS": "200", "TERM": "xterm-256color"},
        )
        os.close(follower)
        output = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            assert ready, "hato test wrote nothing for 60 s"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        _, stderr = proc.communicate(timeout=60)
    assert b"Traceback" not in stderr, stderr
    text = output.decode("utf-8", "replace")
    # rich's own styles are CSI sequences ending in "m"; nothing else may reach the terminal.
    without_styles = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n")
    assert_no_raw_controls(without_styles, "hato test on a terminal")
    assert "\\x1b]0;PWNED\\x07" in without_styles
    assert "[/][blink]" in without_styles  # markup in a server's text is text
