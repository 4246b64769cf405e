"""Talking to Dovecot's auth service (layer 2): its user database and its passwords.

- ``_codec``: the auth-userdb (master) and auth-client protocols as pure state machines.
- ``DovecotUserdb.exists(user)``: the RCPT check of ``accounts.userdb`` (asyncio).
- ``DovecotPasswords``: the ``PasswordCheck`` of ``auth.backend`` (blocking, in a thread),
  and the mechanisms Dovecot offers that Hato carries (PLAIN, LOGIN).
- Dovecot that cannot answer is ``DovecotUnavailable``, within a timeout, never a hang.
"""

from hato.dovecot._client import DovecotPasswords, DovecotUnavailable, DovecotUserdb
from hato.dovecot._codec import (
    AuthCodec,
    AuthContinue,
    AuthFailed,
    AuthOk,
    DovecotProtocolError,
    Handshake,
    LookupFailed,
    Mechanism,
    UserdbCodec,
    UserFound,
    UserNotFound,
    escape,
    unescape,
)

__all__ = [
    "AuthCodec",
    "AuthContinue",
    "AuthFailed",
    "AuthOk",
    "DovecotPasswords",
    "DovecotProtocolError",
    "DovecotUnavailable",
    "DovecotUserdb",
    "Handshake",
    "LookupFailed",
    "Mechanism",
    "UserFound",
    "UserNotFound",
    "UserdbCodec",
    "escape",
    "unescape",
]
