from __future__ import annotations

import base64

import pytest

from hato.server._sasl import (
    LOGIN_PASSWORD,
    LOGIN_USERNAME,
    SaslError,
    decode_login,
    decode_plain,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_plain_fields() -> None:
    assert decode_plain(b64(b"\0alice@localhost\0secret")) == ("", "alice@localhost", "secret")
    assert decode_plain(b64(b"a@x\0a@x\0p w")) == ("a@x", "a@x", "p w")
    assert decode_plain(b64("\0ü@x\0pässword".encode())) == ("", "ü@x", "pässword")


@pytest.mark.parametrize(
    "data",
    [
        "not base64!",
        "YWJj=",  # bad padding
        b64(b"alice\0secret"),  # two fields
        b64(b"\0\0secret"),  # no user
        b64(b"\0alice\0"),  # no password
        b64(b"\0alice\0se\0cret"),  # four fields
        b64(b"\0\xff\0secret"),  # not UTF-8
        "=",
    ],
)
def test_plain_malformed(data: str) -> None:
    with pytest.raises(SaslError):
        decode_plain(data)


def test_login_challenges_and_answers() -> None:
    assert base64.b64decode(LOGIN_USERNAME) == b"Username:"
    assert base64.b64decode(LOGIN_PASSWORD) == b"Password:"
    assert decode_login(b64(b"alice@localhost")) == "alice@localhost"
    assert decode_login("=") == ""
    with pytest.raises(SaslError):
        decode_login("@@@")
    with pytest.raises(SaslError):
        decode_login(b64(b"a\0b"))
