"""The flight recorder on a real ``hato serve``: what it never keeps, and how long it keeps
the rest. Clients speak SMTP over plain sockets; the trace is read with ``hato trace``."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

HATO = Path(sys.executable).with_name("hato")
USER = "alice@localhost"
PASSWORD = "never-in-the-trace-7731"
BODY_MARK = "body-text-that-must-not-be-recorded"


def trace_json(hato: HatoProcess, what: str, done: Callable[[dict[str, Any]], bool]) -> Any:
    def ready() -> Any:
        result = hato.cli("trace", what, "--json")
        if result.returncode != 0:
            return None
        found = json.loads(result.stdout)
        return found if done(found) else None

    return hato.poll(ready, what=f"the trace of {what}")


def recorded_bytes(hato: HatoProcess) -> bytes:
    """The store as it is on disk, its write-ahead log included."""
    return b"".join(p.read_bytes() for p in hato.data_dir.glob("trace.sqlite3*"))


def test_auth_secrets_and_message_data_are_never_recorded(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    hato = hato_factory(
        extra_args=("-o", "auth.allow_plaintext=true", "-o", "auth.failure_delay=0")
    )
    hato.start()
    hato.add_user(USER, PASSWORD)
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    wrong = base64.b64encode(f"\0{USER}\0wrong-{PASSWORD}".encode()).decode()
    user64 = base64.b64encode(USER.encode()).decode()
    password64 = base64.b64encode(PASSWORD.encode()).decode()

    client = smtp_connect(hato.port)
    assert client.read_reply()[0].startswith("220 ")
    assert client.reply("EHLO client.example").startswith("250 ")
    assert client.reply(f"AUTH PLAIN {wrong}").startswith("535 ")
    assert client.reply("AUTH LOGIN").startswith("334 ")
    assert client.reply(user64).startswith("334 ")
    assert client.reply(password64).startswith("235 ")
    assert client.reply(f"MAIL FROM:<{USER}>").startswith("250 ")
    assert client.reply("RCPT TO:<postmaster@localhost>").startswith("250 ")
    assert client.reply("DATA").startswith("354 ")
    client.send(
        f"Subject: secret\r\nMessage-ID: <m1@client.example>\r\n\r\n{BODY_MARK}\r\n.\r\n".encode()
    )
    queued = client.read_reply()[-1]
    assert queued.startswith("250 2.0.0 Ok: queued as ")
    first = queued.rpartition(" ")[2]
    # BDAT chunks are message data as well.
    assert client.reply(f"MAIL FROM:<{USER}>").startswith("250 ")
    assert client.reply("RCPT TO:<postmaster@localhost>").startswith("250 ")
    chunk = f"Subject: chunked\r\n\r\n{BODY_MARK}\r\n".encode()
    client.send(f"BDAT {len(chunk)} LAST\r\n".encode() + chunk)
    second = client.read_reply()[-1].rpartition(" ")[2]
    assert client.reply("QUIT").startswith("221 ")

    story = trace_json(hato, first, lambda s: s["steps"][0].get("ended") is not None)
    session = story["steps"][0]
    said = [f"{line['direction']}: {line['text']}" for line in session["transcript"]]
    assert "C: AUTH PLAIN ****" in said
    assert "C: AUTH LOGIN" in said
    assert said.count("S: 334 ****") == 2
    assert said.count("C: ****") == 2
    assert "S: 235 2.7.0 Authentication successful" in said
    assert f"C: BDAT {len(chunk)} LAST" in said
    assert f"S: 250 2.0.0 Ok: queued as {second}" in said
    # The refused login is there with its reason, never with what was tried.
    refusals = [e["data"]["reason"] for e in session["events"] if e["event"] == "reject"]
    assert refusals == [f"authentication failed for user {USER!r} (PLAIN)"]
    # One session, two messages: both stories start with it.
    other = trace_json(hato, second, lambda s: True)
    assert other["steps"][0]["session"] == session["session"]

    hato.stop()  # everything pending is written
    stored = recorded_bytes(hato)
    for secret in (PASSWORD, plain, wrong, user64, password64, BODY_MARK):
        assert secret.encode() not in stored, secret


def test_records_older_than_the_retention_are_pruned(
    hato_factory: Callable[..., HatoProcess], smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    hato = hato_factory(extra_args=("-o", "trace.retention=2"))
    hato.start()
    client = smtp_connect(hato.port)
    client.read_reply()
    client.reply("HELO client.example")
    client.reply("MAIL FROM:<someone@example.org>")
    client.reply("RCPT TO:<postmaster@localhost>")
    client.reply("DATA")
    client.send(b"Subject: short-lived\r\nMessage-ID: <brief@example.org>\r\n\r\nhi\r\n.\r\n")
    queue_id = client.read_reply()[-1].rpartition(" ")[2]
    client.reply("QUIT")

    trace_json(hato, "<brief@example.org>", lambda s: s["queue_id"] == queue_id)
    # Pruned by the running server (every second with so short a retention).
    gone = hato.poll(
        lambda: (done := hato.cli("trace", queue_id)).returncode == 1 and done,
        timeout=20,
        what="the trace pruned",
    )
    assert f"nothing recorded about {queue_id}" in gone.stderr
    assert hato.cli("trace", "--since", "1h").stdout == "No message matches.\n"


def test_disabled_recorder_keeps_nothing(hato_factory: Callable[..., HatoProcess]) -> None:
    hato = hato_factory(extra_args=("-o", "trace.enabled=false"))
    hato.start()
    assert not list(hato.data_dir.glob("trace.sqlite3*"))
    done = hato.cli("trace", "--since", "1h")
    assert done.returncode == 1 and "no trace recorded" in done.stderr


def test_a_search_finds_refused_recipients_which_have_no_queue_id(
    hato_plain: HatoProcess, smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    hato = hato_plain
    client = smtp_connect(hato.port)
    assert client.read_reply()[0].startswith("220 ")
    assert client.reply("EHLO client.example").startswith("250 ")
    assert client.reply("MAIL FROM:<sender@example.org>").startswith("250 ")
    assert client.reply("RCPT TO:<nobody@localhost>").startswith("550 5.1.1")
    assert client.reply("RCPT TO:<someone@elsewhere.example>").startswith("554 5.7.1")
    assert client.reply("RCPT TO:<postmaster@localhost>").startswith("250 ")
    assert client.reply("DATA").startswith("354 ")
    client.send(b"Subject: one got through\r\n\r\nhi\r\n.\r\n")
    assert client.read_reply()[-1].startswith("250 ")
    client.reply("QUIT")

    def search(*args: str) -> Any:
        done = hato.cli("trace", *args, "--json")
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        return found if any(item["kind"] == "refusal" for item in found) else None

    (refused,) = hato.poll(lambda: search("--recipient", "NOBODY@"), what="the refusal")
    assert refused["stage"] == "RCPT" and refused["recipient"] == "nobody@localhost"
    assert refused["reply"].startswith("550 5.1.1") and refused["sender"] == "sender@example.org"
    assert refused["client"].startswith("[127.0.0.1]:")
    by_sender = search("--sender", "sender@example.org", "--since", "1h")
    assert [(item["kind"], item.get("recipient")) for item in by_sender] == [
        ("refusal", "nobody@localhost"),
        ("refusal", "someone@elsewhere.example"),
        ("message", None),
    ]
    text = hato.cli("trace", "--recipient", "elsewhere.example").stdout
    assert text.startswith("Refused (nothing queued, so no queue ID):\nrefused RCPT  ")
    assert "    to <someone@elsewhere.example>\n    554 5.7.1" in text
    assert f"session {refused['session']}" in hato.cli("trace", "--recipient", "nobody@").stdout
    assert hato.cli("trace", "--recipient", "nobody@else").stdout == "No message matches.\n"
