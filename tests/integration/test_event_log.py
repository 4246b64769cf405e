"""The JSON-lines event log tells one session's story: connect to disconnect, same session id."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

SESSION_EVENTS = {"connect", "helo", "mail", "rcpt", "queued", "reject", "disconnect"}


def test_one_session_in_the_event_log(
    hato: HatoProcess, smtp_connect: Callable[..., SmtpLineClient]
) -> None:
    client = smtp_connect(hato.port)
    local_port = client.local_port
    assert client.read_reply()[0].startswith("220 ")
    client.command("EHLO client.example")
    assert client.read_reply()[-1] == "250 HELP"
    assert client.reply("MAIL FROM:<admin@test.com> ENVID=log1") == "250 2.1.0 Ok"
    assert client.reply("RCPT TO:<user@localhost> NOTIFY=FAILURE") == "250 2.1.5 Ok"
    denied = client.reply("RCPT TO:<other@remote.example>")
    assert denied.startswith("554 5.7.1")
    assert client.reply("DATA").startswith("354 ")
    client.send(b"Subject: logged\r\n\r\nbody\r\n.\r\n")
    accepted = client.read_reply()[-1]
    queue_id = accepted.removeprefix("250 2.0.0 Ok: queued as ")
    assert queue_id != accepted
    unknown = client.reply("FOO")
    assert unknown.startswith("500 5.5.2")
    assert client.reply("QUIT").startswith("221 ")

    connect = hato.wait_for_event("connect", client_port=local_port)
    session = connect["session"]
    assert connect["client_ip"] == "127.0.0.1"
    disconnect = hato.wait_for_event("disconnect", session=session)
    events = [event for event in hato.events() if event.get("session") == session]
    names = [event["event"] for event in events]
    assert set(names) == SESSION_EVENTS
    assert names[0] == "connect"
    assert names[-1] == "disconnect"
    assert names.index("helo") < names.index("mail") < names.index("rcpt") < names.index("queued")

    [helo] = hato.events("helo", session=session)
    assert (helo["helo"], helo["extended"]) == ("client.example", True)
    [mail] = hato.events("mail", session=session)
    assert mail["reverse_path"] == "admin@test.com"
    assert mail["params"] == {"envid": "log1"}
    [rcpt] = hato.events("rcpt", session=session)
    assert rcpt["recipient"] == "user@localhost"
    assert rcpt["params"]["notify"] == ["FAILURE"]

    [queued] = hato.events("queued", session=session)
    message, _ = hato.message(queue_id)
    assert queued["queue_id"] == queue_id
    assert queued["size"] == message.size
    assert queued["recipients"] == ["user@localhost"]
    assert queued["reverse_path"] == "admin@test.com"
    assert message.envelope.session_id == session

    relay, protocol = hato.events("reject", session=session)
    assert (relay["command"], relay["reply"]) == ("RCPT", denied)
    assert relay["reason"] == "relay to remote.example from an untrusted client"
    assert (protocol["command"], protocol["reply"]) == ("FOO", unknown)
    assert protocol["reason"]

    assert disconnect["messages"] == 1
    assert disconnect["recipients"] == 1
    assert disconnect["errors"] == 2
    assert disconnect["reason"]
    assert all(isinstance(event["ts"], float) for event in events)
    assert [event["ts"] for event in events] == sorted(event["ts"] for event in events)
