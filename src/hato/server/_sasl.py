"""SASL PLAIN (RFC 4616) and LOGIN decoding for SMTP AUTH (RFC 4954): pure functions."""

from __future__ import annotations

import base64
import binascii

__all__ = ["LOGIN_PASSWORD", "LOGIN_USERNAME", "SaslError", "decode_login", "decode_plain"]

# The LOGIN mechanism's challenges, base64 of "Username:" and "Password:".
LOGIN_USERNAME = "VXNlcm5hbWU6"
LOGIN_PASSWORD = "UGFzc3dvcmQ6"


class SaslError(ValueError):
    """The client's response is not valid base64 or not a well-formed exchange."""


def _decode(data: str) -> str:
    text = data.strip()
    if text == "=":  # RFC 4954 4: "=" stands for an empty response
        return ""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeError) as error:
        raise SaslError("invalid base64 or not UTF-8") from error


def decode_plain(data: str) -> tuple[str, str, str]:
    """(authzid, authcid, password) of a PLAIN response: base64 of authzid NUL authcid NUL pw."""
    parts = _decode(data).split("\0")
    if len(parts) != 3:
        raise SaslError("a PLAIN response has three fields separated by NUL")
    authzid, authcid, password = parts
    if not authcid or not password:
        raise SaslError("a PLAIN response needs a user name and a password")
    return authzid, authcid, password


def decode_login(data: str) -> str:
    """One LOGIN answer (the user name or the password)."""
    value = _decode(data)
    if "\0" in value:
        raise SaslError("a LOGIN answer contains no NUL")
    return value
