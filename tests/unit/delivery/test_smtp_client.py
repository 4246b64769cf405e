"""``SmtpClient`` against real sockets on 127.0.0.1: a scripted asyncio SMTP server
answers from a script (refusals, no PIPELINING, no EHLO, silence, a hang-up mid-DATA).
STARTTLS is in ``test_smtp_client_tls.py``, which uses the server defined here."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hato.delivery import RecipientReply, SendResult, SmtpClient, SmtpError, Timeouts
from hato.delivery._smtp_client import MESSAGE_CHUNK, message_chunks
from hato.smtp import Command, reply

T = TypeVar("T")
HOST = "127.0.0.1"
EXTENSIONS = ("PIPELINING", "SIZE 100000", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN")
FAST = Timeouts(greeting=10, mail=10, rcpt=10, data_init=10, data_block=10, data_end=10, command=10)
MESSAGE = b"Subject: test\r\n\r\nHello\r\n.leading dot\r\n..two\r\n"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, 20))


@dataclass
class Script:
    """How the scripted server behaves; ``replies`` maps a command prefix to its answer."""

    banner: str = "220 mx.test ESMTP scripted"
    ehlo: tuple[str, ...] | None = EXTENSIONS  # None: EHLO is unknown (500), HELO works
    replies: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None  # STARTTLS offered with this context
    after_tls: tuple[str, ...] = ("PIPELINING", "AUTH PLAIN LOGIN")
    inject_after_220: bytes = b""  # bytes sent in plaintext right after "220 Ready"
    silent: bool = False  # never says a word
    hang_up_in_data: bool = False  # closes after the first line of message data
    stall_in_data: bool = False  # stops reading once DATA is answered
    batch_until_data: bool = False  # answers MAIL and RCPT only once DATA came


class ScriptedServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self.auth: list[bytes] = []
        self.tls_sessions = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.script
        if script.silent:
            await reader.read()
            return
        if script.stall_in_data:
            # A fixed small receive buffer (no autotuning): the client's writes back up soon.
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        writer.write(f"{script.banner}\r\n".encode())
        held: list[str] = []
        state = {"tls": False, "mail": False, "rcpts": 0}
        while raw := await reader.readline():
            command = raw.decode().rstrip("\r\n")
            self.commands.append(command)
            verb = command.split(" ")[0].upper()
            answer = self._answer(command, verb, state)
            if script.batch_until_data and verb in ("MAIL", "RCPT"):
                held.append(answer)
                continue
            out = "".join(f"{line}\r\n" for line in [*held, answer]).encode()
            held.clear()
            if verb == "STARTTLS" and answer.startswith("220") and script.tls is not None:
                # One write with the 220, and the handshake at once (start_tls drains first).
                writer.write(out + script.inject_after_220)
                await writer.start_tls(script.tls)
                state["tls"] = True
                self.tls_sessions += 1
                continue
            writer.write(out)
            await writer.drain()
            if verb == "QUIT":
                return
            if verb == "DATA" and answer.startswith("354"):
                if script.stall_in_data:
                    await asyncio.sleep(60)  # cancelled when the test's loop ends
                if not await self._message(reader, writer):
                    return

    def _answer(self, command: str, verb: str, state: dict[str, Any]) -> str:
        for prefix, answer in self.script.replies.items():
            if command.upper().startswith(prefix.upper()):
                self._track(verb, answer, state)
                return answer
        answer = self._default(verb, state)
        self._track(verb, answer, state)
        return answer

    def _default(self, verb: str, state: dict[str, Any]) -> str:
        script = self.script
        if verb == "EHLO":
            if script.ehlo is None:
                return "500 5.5.2 Command unrecognized"
            keywords = list(script.after_tls if state["tls"] else script.ehlo)
            if script.tls is not None and not state["tls"]:
                keywords.append("STARTTLS")
            lines = ["mx.test", *keywords]
            return "\r\n".join(
                f"250{'-' if i < len(lines) - 1 else ' '}{x}" for i, x in enumerate(lines)
            )
        if verb == "AUTH":
            return "235 2.7.0 Authentication successful"
        if verb == "DATA" and not state["rcpts"]:
            return "554 5.5.1 No valid recipients"
        if verb in ("RCPT", "DATA") and not state["mail"]:
            return "503 5.5.1 Need MAIL"
        return {
            "HELO": "250 mx.test",
            "STARTTLS": "220 2.0.0 Ready",
            "DATA": "354 End data with <CR><LF>.<CR><LF>",
            "QUIT": "221 2.0.0 Bye",
        }.get(verb, "250 2.0.0 Ok")

    def _track(self, verb: str, answer: str, state: dict[str, Any]) -> None:
        ok = answer.startswith("2")
        if verb == "MAIL":
            state["mail"], state["rcpts"] = ok, 0
        elif verb == "RCPT" and ok:
            state["rcpts"] += 1
        elif verb == "RSET":
            state["mail"], state["rcpts"] = False, 0
        elif verb == "AUTH":
            self.auth.append(base64.b64decode(self.commands[-1].split()[-1]))

    async def _message(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        data = bytearray()
        while (line := await reader.readuntil(b"\r\n")) != b".\r\n":
            if self.script.hang_up_in_data:
                return False
            data += line[1:] if line.startswith(b".") else line
        self.messages.append(bytes(data))
        self.commands.append("<message>")
        writer.write(self.script.replies.get(".", "250 2.0.0 Ok: queued").encode() + b"\r\n")
        await writer.drain()
        return True


async def session(
    script: Script, work: Callable[[SmtpClient, ScriptedServer], Awaitable[T]], **connect: Any
) -> tuple[T, ScriptedServer]:
    """Connect to a server running ``script``, run ``work``, QUIT; returns work's result."""
    async with ScriptedServer(script) as server:
        options: dict[str, Any] = {"local_hostname": "client.test", "timeouts": FAST}
        options.update(connect)
        async with await SmtpClient.connect(HOST, server.port, **options) as client:
            result = await work(client, server)
        return result, server


async def send(client: SmtpClient, *recipients: str, message: Any = MESSAGE) -> SendResult:
    return await client.send(
        reverse_path="alice@example.org",
        recipients=list(recipients),
        message=message,
        size=len(MESSAGE),
    )


def codes(result: SendResult) -> tuple[int | None, list[tuple[str, int]], int | None]:
    return (
        result.mail.code if result.mail else None,
        [(r.address, r.reply.code) for r in result.recipients],
        result.data.code if result.data else None,
    )


# -- transactions --------------------------------------------------------------------------


def test_pipelined_delivery_to_a_server_that_answers_the_group_at_once() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        assert client.pipelining
        return await send(client, "bob@example.com", "carol@example.com")

    result, server = run(session(Script(batch_until_data=True), work))
    assert codes(result) == (250, [("bob@example.com", 250), ("carol@example.com", 250)], 250)
    assert result.data == reply(250, "2.0.0", "Ok: queued")
    assert server.messages == [MESSAGE]
    assert server.commands == [
        "EHLO client.test",
        f"MAIL FROM:<alice@example.org> SIZE={len(MESSAGE)}",
        "RCPT TO:<bob@example.com>",
        "RCPT TO:<carol@example.com>",
        "DATA",
        "<message>",
        "QUIT",
    ]


def test_transcript_has_times_and_both_sides() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpClient:
        await send(client, "bob@example.com")
        return client

    client, _server = run(session(Script(), work))
    times = [line.seconds for line in client.transcript]
    assert times == sorted(times)
    assert times[0] >= 0
    texts = [(line.direction, line.text) for line in client.transcript]
    assert texts[0] == ("S", "220 mx.test ESMTP scripted")
    assert ("C", "EHLO client.test") in texts
    assert ("C", f"<message data, {len(MESSAGE)} octets>") in texts
    assert texts[-2:] == [("C", "QUIT"), ("S", "221 2.0.0 Bye")]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lock-step"])
def test_per_recipient_replies(pipelining: bool) -> None:
    ehlo = EXTENSIONS if pipelining else tuple(e for e in EXTENSIONS if e != "PIPELINING")
    script = Script(
        ehlo=ehlo,
        replies={
            "RCPT TO:<temp@": "451 4.3.0 Try later",
            "RCPT TO:<gone@": "550 5.1.1 No such user",
        },
    )

    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        assert client.pipelining is pipelining
        return await send(client, "temp@example.com", "ok@example.com", "gone@example.com")

    result, server = run(session(script, work))
    assert result.recipients == (
        RecipientReply("temp@example.com", reply(451, "4.3.0", "Try later")),
        RecipientReply("ok@example.com", reply(250, "2.0.0", "Ok")),
        RecipientReply("gone@example.com", reply(550, "5.1.1", "No such user")),
    )
    assert result.data is not None and result.data.code == 250
    assert server.messages == [MESSAGE]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lock-step"])
def test_no_recipient_accepted_then_rset_and_the_next_message(pipelining: bool) -> None:
    ehlo = EXTENSIONS if pipelining else ("8BITMIME",)
    script = Script(ehlo=ehlo, replies={"RCPT TO:<gone@": "550 5.1.1 No such user"})

    async def work(client: SmtpClient, _server: ScriptedServer) -> tuple[SendResult, SendResult]:
        return await send(client, "gone@example.com"), await send(client, "bob@example.com")

    (first, second), server = run(session(script, work))
    assert codes(first) == (250, [("gone@example.com", 550)], None)
    assert codes(second) == (250, [("bob@example.com", 250)], 250)
    expected_data = ["DATA"] if pipelining else []
    size = f" SIZE={len(MESSAGE)}" if pipelining else ""
    assert server.commands[2:] == [
        "RCPT TO:<gone@example.com>",
        *expected_data,
        "RSET",
        f"MAIL FROM:<alice@example.org>{size}",
        "RCPT TO:<bob@example.com>",
        "DATA",
        "<message>",
        "QUIT",
    ]
    assert server.messages == [MESSAGE]


def test_refused_mail_sends_no_rset() -> None:
    script = Script(ehlo=(), replies={"MAIL": "553 5.7.1 Sender refused"})

    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        return await send(client, "bob@example.com")

    result, server = run(session(script, work))
    assert codes(result) == (553, [], None)
    assert server.commands == ["EHLO client.test", "MAIL FROM:<alice@example.org>", "QUIT"]


def test_refused_data_is_reported_and_cleaned_up() -> None:
    script = Script(replies={"DATA": "451 4.3.0 Queue full"})

    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        return await send(client, "bob@example.com")

    result, server = run(session(script, work))
    assert codes(result) == (250, [("bob@example.com", 250)], 451)
    assert server.commands[-2:] == ["RSET", "QUIT"]


def test_refused_message_after_the_dot() -> None:
    script = Script(replies={".": "554 5.7.1 Spam"})

    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        return await send(client, "bob@example.com")

    result, server = run(session(script, work))
    assert result.data == reply(554, "5.7.1", "Spam")
    assert "RSET" not in server.commands


def test_helo_when_ehlo_is_unknown() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        assert client.extensions == {}
        return await send(client, "bob@example.com")

    result, server = run(session(Script(ehlo=None), work))
    assert codes(result) == (250, [("bob@example.com", 250)], 250)
    assert server.commands[:3] == [
        "EHLO client.test",
        "HELO client.test",
        "MAIL FROM:<alice@example.org>",
    ]


def test_dsn_parameters_reach_the_server() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        return await client.send(
            reverse_path="alice@example.org",
            recipients=[("bob@example.com", ("SUCCESS", "FAILURE"), "rfc822;b+x@example.com")],
            message=MESSAGE,
            size=10,
            body="8BITMIME",
            ret="HDRS",
            envid="q1 x",
        )

    result, server = run(session(Script(), work))
    assert codes(result)[2] == 250
    assert server.commands[1:3] == [
        "MAIL FROM:<alice@example.org> SIZE=10 BODY=8BITMIME RET=HDRS ENVID=q1+20x",
        "RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.com",
    ]


def test_local_refusal_sends_nothing() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SendResult:
        return await client.send(
            reverse_path="a@example.org", recipients=["b@example.com"], message=b"x", size=200_000
        )

    result, server = run(session(Script(), work))
    assert result.mail is None and result.data is None and result.recipients == ()
    assert result.local_refusal is not None
    assert (result.local_refusal.code, result.local_refusal.enhanced) == (552, "5.3.4")
    assert server.commands == ["EHLO client.test", "QUIT"]


def test_message_from_a_file_and_from_an_async_iterable(tmp_path: Path) -> None:
    big = b"".join(b".%06d and some text to make the line longer\r\n" % i for i in range(4000))
    path = tmp_path / "message"
    path.write_bytes(big)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(MESSAGE), 5):
            yield MESSAGE[start : start + 5]

    async def work(client: SmtpClient, _server: ScriptedServer) -> list[SendResult]:
        return [await send(client, "b@example.com", message=m) for m in (path, pieces())]

    results, server = run(session(Script(), work))
    assert [r.data.code if r.data else None for r in results] == [250, 250]
    assert server.messages == [big, MESSAGE]


def test_files_are_read_in_bounded_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000  # 256000 octets: three full chunks and a rest
    path = tmp_path / "message"
    path.write_bytes(data)

    async def collect() -> list[bytes]:
        return [chunk async for chunk in message_chunks(path)]

    chunks = run(collect())
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [MESSAGE_CHUNK] * 3 + [len(data) - 3 * MESSAGE_CHUNK]


# -- failures, classified ----------------------------------------------------------------


def connect_error(script: Script, **connect: Any) -> tuple[SmtpError, ScriptedServer]:
    async def attempt() -> tuple[SmtpError, ScriptedServer]:
        async with ScriptedServer(script) as server:
            options: dict[str, Any] = {"local_hostname": "client.test", "timeouts": FAST}
            options.update(connect)
            with pytest.raises(SmtpError) as caught:
                await SmtpClient.connect(HOST, server.port, **options)
            return caught.value, server

    return run(attempt())


@pytest.mark.parametrize(
    ("banner", "transient"),
    [("554 5.7.1 No SMTP service here", False), ("421 4.3.2 Busy, try later", True)],
)
def test_refused_banner(banner: str, transient: bool) -> None:
    error, server = connect_error(Script(banner=banner))
    assert error.reply is not None
    assert str(error.reply) == banner
    assert error.transient is transient
    assert error.enhanced == banner.split()[1]
    assert server.commands == ([] if transient else ["QUIT"])


def test_a_server_that_never_answers_times_out() -> None:
    short = Timeouts(greeting=0.3)
    error, _server = connect_error(Script(silent=True), timeouts=short)
    assert error.transient
    assert error.reply is None
    assert error.enhanced == "4.4.2"
    assert "within 0.3 s" in str(error)


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]

    async def attempt() -> SmtpError:
        with pytest.raises(SmtpError) as caught:
            await SmtpClient.connect(HOST, port, local_hostname="client.test")
        return caught.value

    error = run(attempt())
    assert error.transient
    assert error.enhanced == "4.4.1"


def test_hang_up_in_the_middle_of_data() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpError:
        with pytest.raises(SmtpError) as caught:
            await send(client, "bob@example.com")
        with pytest.raises(SmtpError, match="no longer usable"):
            await send(client, "bob@example.com")
        return caught.value

    error, server = run(session(Script(hang_up_in_data=True), work))
    assert error.transient
    assert error.enhanced == "4.4.2"
    assert server.messages == []


def test_a_server_that_stops_reading_times_out() -> None:
    # More than the socket buffers hold, so the writes must wait for the peer.
    message = (b"x" * 998 + b"\r\n") * (16 * 1024)

    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpError:
        with pytest.raises(SmtpError) as caught:
            await send(client, "bob@example.com", message=message)
        return caught.value

    script = Script(stall_in_data=True)
    error, server = run(session(script, work, timeouts=Timeouts(data_block=0.5)))
    assert error.transient
    assert error.enhanced == "4.4.2"
    assert "did not take our data within 0.5 s" in str(error)
    assert server.messages == []


def test_an_unreadable_message_file_is_a_local_transient_error(tmp_path: Path) -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> tuple[SmtpError, bool]:
        with pytest.raises(SmtpError) as caught:
            await send(client, "bob@example.com", message=tmp_path / "missing")
        return caught.value, client.connection.can_send(Command.MAIL)

    (error, usable), server = run(session(Script(), work))
    assert error.transient
    assert error.enhanced == "4.3.0"
    assert "reading the message" in str(error)
    assert not usable
    assert server.messages == []


def test_a_transaction_needs_recipients() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> None:
        with pytest.raises(ValueError, match="at least one recipient"):
            await send(client)

    _nothing, server = run(session(Script(), work))
    assert server.commands == ["EHLO client.test", "QUIT"]


def test_default_timeouts_are_rfc_5321s() -> None:
    # RFC 5321 4.5.3.2.1 to 4.5.3.2.6, in seconds.
    assert Timeouts() == Timeouts(
        greeting=300, mail=300, rcpt=300, data_init=120, data_block=180, data_end=600, command=300
    )


def test_421_in_the_middle_of_a_transaction() -> None:
    script = Script(replies={"RCPT": "421 4.4.2 Timeout, closing"})

    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpError:
        with pytest.raises(SmtpError) as caught:
            await send(client, "bob@example.com")
        return caught.value

    error, _server = run(session(script, work))
    assert error.transient
    assert error.reply == reply(421, "4.4.2", "Timeout, closing")


def test_garbage_instead_of_a_reply() -> None:
    error, _server = connect_error(Script(banner="HTTP/1.1 400 Bad Request"))
    assert error.transient
    assert error.enhanced == "4.5.0"
    assert "HTTP/1.1" in str(error)


def test_login_needs_auth_plain_offered() -> None:
    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpError:
        with pytest.raises(SmtpError) as caught:
            await client.login("user", "secret")
        return caught.value

    error, server = run(session(Script(), work))
    assert error.transient and error.enhanced == "4.7.4"
    assert server.auth == []


def test_refused_login_is_classified_by_its_reply() -> None:
    script = Script(ehlo=("AUTH PLAIN",), replies={"AUTH": "535 5.7.8 Bad credentials"})

    async def work(client: SmtpClient, _server: ScriptedServer) -> SmtpError:
        with pytest.raises(SmtpError) as caught:
            await client.login("user", "wrong")
        return caught.value

    error, server = run(session(script, work))
    assert not error.transient
    assert error.enhanced == "5.7.8"
    assert server.auth == [b"\0user\0wrong"]
