"""The Dovecot auth codecs byte by byte, and the clients against scripted peers on a unix
socket: answers, silence (a timeout), garbage and hang-ups are each one clean outcome."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hato.config import DovecotSocket
from hato.dovecot import (
    AuthCodec,
    AuthContinue,
    AuthFailed,
    AuthOk,
    DovecotPasswords,
    DovecotProtocolError,
    DovecotUnavailable,
    DovecotUserdb,
    Handshake,
    LookupFailed,
    Mechanism,
    UserdbCodec,
    UserFound,
    UserNotFound,
    escape,
    unescape,
)

USERDB_REPLIES = (
    b"VERSION\t1\t1\nSPID\t42\nUSER\t1\tann@example.com\tuid=8\thome=/h\nNOTFOUND\t2\n"
    b"FAIL\t3\treason=db down\n"
)
CLIENT_REPLIES = (
    b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nMECH\tAPOP\tprivate\n"
    b"SPID\t1\nCUID\t2\nCOOKIE\tab\nDONE\nCONT\t1\tVXNlcm5hbWU6\nOK\t2\tuser=ann\n"
    b"FAIL\t3\tuser=ann\nFAIL\t4\ttemp\treason=db\n"
)


@given(st.text())
def test_escaping_round_trips_and_leaves_no_separator(text: str) -> None:
    escaped = escape(text)
    assert not any(char in escaped for char in "\t\n\r\0")
    assert unescape(escaped) == text


def test_userdb_events() -> None:
    codec = UserdbCodec()
    assert codec.hello() == b"VERSION\t1\t1\n"
    assert codec.lookup("ann@example.com") == (1, b"USER\t1\tann@example.com\tservice=smtp\n")
    assert codec.receive(USERDB_REPLIES) == [
        Handshake(),
        UserFound(1, "ann@example.com", {"uid": "8", "home": "/h"}),
        UserNotFound(2),
        LookupFailed(3, "db down"),
    ]


def test_a_user_name_with_a_tab_cannot_forge_a_field() -> None:
    _, line = UserdbCodec().lookup("ann\tservice=imap")
    assert line.count(b"\t") == 3 and line.endswith(b"\tservice=smtp\n")


@given(st.lists(st.integers(min_value=0, max_value=len(CLIENT_REPLIES)), max_size=8))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    whole = AuthCodec().receive(CLIENT_REPLIES)
    codec, events, start = AuthCodec(), [], 0
    for cut in [*sorted(cuts), len(CLIENT_REPLIES)]:
        events += codec.receive(CLIENT_REPLIES[start:cut])
        start = cut
    assert events == whole


def test_auth_client_events() -> None:
    codec = AuthCodec()
    assert codec.hello(7) == b"VERSION\t1\t2\nCPID\t7\n"
    request, line = codec.start("PLAIN", initial="AGFubgBz", secured=True, client_ip="192.0.2.1")
    assert line == b"AUTH\t1\tPLAIN\tservice=smtp\tsecured\trip=192.0.2.1\tresp=AGFubgBz\n"
    assert codec.answer(request, "eA==") == b"CONT\t1\teA==\n"
    assert codec.receive(CLIENT_REPLIES) == [
        Handshake(
            (
                Mechanism("PLAIN", frozenset({"plaintext"})),
                Mechanism("LOGIN", frozenset({"plaintext"})),
                Mechanism("APOP", frozenset({"private"})),
            )
        ),
        AuthContinue(1, "VXNlcm5hbWU6"),
        AuthOk(2, "ann"),
        AuthFailed(3, "ann", False),
        AuthFailed(4, "", True, "db"),
    ]


@pytest.mark.parametrize(
    "garbage",
    [b"VERSION\t2\t0\n", b"HELLO\tthere\n", b"USER\tx\tann\n", b"NOTFOUND\n", b"x" * 70000],
)
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    with pytest.raises(DovecotProtocolError):
        UserdbCodec().receive(garbage)


# -- the clients, against scripted peers -------------------------------------------------


@pytest.fixture
def peer() -> Iterator[tuple[str, list[bytes], list[bytes]]]:
    """A unix socket answering each connection with the next script (None: silence)."""
    top = tempfile.mkdtemp(prefix="hato-dc-")
    path = str(Path(top) / "auth")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    scripts: list[bytes] = []
    heard: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    heard.append(conn.recv(4096))
                    script = scripts.pop(0) if scripts else b""
                    if script == b"silence":
                        conn.recv(4096)  # until the client gives up
                        continue
                    conn.sendall(script)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, scripts, heard
    listener.close()


def test_userdb_client_answers_and_failures(peer: tuple[str, list[bytes], list[bytes]]) -> None:
    path, scripts, heard = peer
    userdb = DovecotUserdb(DovecotSocket(path=path), timeout=1)
    scripts += [
        b"VERSION\t1\t1\nSPID\t1\nUSER\t1\tann\n",
        b"VERSION\t1\t1\nSPID\t1\nNOTFOUND\t1\n",
        b"VERSION\t1\t1\nSPID\t1\nFAIL\t1\n",
        b"VERSION\t1\t1\n",  # then hangs up
        b"silence",
        b"VERSION\t9\t0\n",
    ]
    assert asyncio.run(userdb.exists("ann")) is True
    assert heard[0] == b"VERSION\t1\t1\nUSER\t1\tann\tservice=smtp\n"
    assert asyncio.run(userdb.exists("bob")) is False
    for expected in ("lookup failed", "closed before", "no answer within 1 s", "version"):
        with pytest.raises(DovecotUnavailable, match=expected):
            asyncio.run(userdb.exists("ann"))


def test_password_client_answers_and_failures(peer: tuple[str, list[bytes], list[bytes]]) -> None:
    path, scripts, heard = peer
    passwords = DovecotPasswords(DovecotSocket(path=path), timeout=1)
    hello = b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tCRAM-MD5\nMECH\tLOGIN\nDONE\n"
    scripts += [
        hello,
        hello + b"OK\t1\tuser=ann\n",
        hello + b"FAIL\t1\n",
        hello + b"FAIL\t1\ttemp\n",
        b"silence",
    ]
    assert passwords.mechanisms() == ("PLAIN", "LOGIN")
    assert passwords.verify_password("ann", "pw", client_ip="192.0.2.7") is True
    assert b"\trip=192.0.2.7\tresp=AGFubgBwdw==\n" in heard[1]
    assert passwords.verify_password("ann", "bad") is False
    for expected in ("temporary", "no answer within 1 s"):
        with pytest.raises(DovecotUnavailable, match=expected):
            passwords.verify_password("ann", "pw")
    refused = DovecotPasswords(DovecotSocket(path=path + "-none"), timeout=1)
    with pytest.raises(DovecotUnavailable):
        refused.verify_password("ann", "pw")
