"""The sockets around ``_codec``: Dovecot's user database at RCPT, its passwords at AUTH.

Promises:
- Every question is bounded by a timeout, and every way Dovecot cannot answer (no socket,
  refused, reset, silence, garbage, a ``FAIL``) is one :class:`DovecotUnavailable`, so the
  caller answers with a temporary failure (451 at RCPT, 454 at AUTH), never a hang.
- A connection per question: Dovecot's auth service is local and cheap to reach, and no
  state survives a Dovecot restart.
- ``DovecotUserdb.exists`` is asyncio (it runs while an SMTP session waits on the loop);
  ``DovecotPasswords.verify_password`` blocks, as the ``PasswordCheck`` seam does (the
  server calls it in a thread).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Callable

from ..accounts import AccountError
from ..config import DovecotSocket
from ._codec import (
    AuthCodec,
    AuthContinue,
    AuthFailed,
    AuthOk,
    DovecotProtocolError,
    Handshake,
    LookupFailed,
    UserdbCodec,
    UserFound,
    UserNotFound,
)

__all__ = ["DovecotPasswords", "DovecotUnavailable", "DovecotUserdb"]

READ_SIZE = 16384
# The SASL mechanisms whose exchange Hato's SMTP side decodes, so they can be handed on.
CARRIED = ("PLAIN", "LOGIN")


class DovecotUnavailable(AccountError):
    """Dovecot's auth service did not answer the question: try again later."""


def _where(target: DovecotSocket) -> str:
    return str(target)


class DovecotUserdb:
    """``exists(user)``: a ``USER`` lookup on Dovecot's auth-userdb socket."""

    def __init__(self, target: DovecotSocket, *, timeout: float = 5.0) -> None:
        self.target = target
        self.timeout = timeout

    async def exists(self, user: str) -> bool:
        """True: Dovecot knows the user; False: NOTFOUND. Raises DovecotUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._ask(user)
        except TimeoutError:
            raise DovecotUnavailable(
                f"{_where(self.target)}: no answer within {self.timeout:g} s"
            ) from None
        except (OSError, DovecotProtocolError) as error:
            raise DovecotUnavailable(f"{_where(self.target)}: {error}") from None

    async def _ask(self, user: str) -> bool:
        target = self.target
        if target.path is not None:
            reader, writer = await asyncio.open_unix_connection(target.path)
        else:
            assert target.address is not None
            reader, writer = await asyncio.open_connection(target.address.host, target.address.port)
        try:
            codec = UserdbCodec()
            request, line = codec.lookup(user)
            # The handshake and the question in one write: the server reads in order.
            writer.write(codec.hello() + line)
            await writer.drain()
            while data := await reader.read(READ_SIZE):
                for event in codec.receive(data):
                    match event:
                        case UserFound(request=found) if found == request:
                            return True
                        case UserNotFound(request=found) if found == request:
                            return False
                        case LookupFailed(request=found, reason=reason) if found == request:
                            raise DovecotProtocolError(f"lookup failed: {reason}")
            raise DovecotProtocolError("connection closed before the answer")
        finally:
            writer.close()


class DovecotPasswords:
    """The ``PasswordCheck`` of ``auth.backend = "dovecot:..."``: Dovecot's auth-client."""

    def __init__(
        self,
        target: DovecotSocket,
        *,
        timeout: float = 5.0,
        connect: Callable[[DovecotSocket, float], socket.socket] | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._connect = connect or _connect

    def mechanisms(self) -> tuple[str, ...]:
        """The mechanisms Dovecot offers (not the private ones) that Hato can carry."""
        offered = self._handshake_only()
        return tuple(m for m in offered if m in CARRIED)

    def verify_password(self, address: str, password: str, *, client_ip: str = "") -> bool:
        """PLAIN with the initial response: OK is True, FAIL False, ``FAIL temp`` raises.

        ``client_ip`` goes as ``rip``, so Dovecot's own failure penalties are per client,
        not one for everyone Hato speaks for."""
        token = base64.b64encode(f"\0{address}\0{password}".encode()).decode("ascii")
        try:
            with self._connect(self.target, self.timeout) as conn:
                codec = AuthCodec()
                request, line = codec.start(
                    "PLAIN", initial=token, secured=True, client_ip=client_ip
                )
                conn.sendall(codec.hello(os.getpid()) + line)
                while data := conn.recv(READ_SIZE):
                    for event in codec.receive(data):
                        match event:
                            case AuthOk(request=found) if found == request:
                                return True
                            case AuthFailed(request=found, temporary=temp) if found == request:
                                if temp:
                                    raise DovecotProtocolError("temporary failure")
                                return False
                            case AuthContinue(request=found) if found == request:
                                # PLAIN has nothing more to say: a server that asks is wrong.
                                return False
                raise DovecotProtocolError("connection closed before the answer")
        except TimeoutError:
            raise DovecotUnavailable(
                f"{_where(self.target)}: no answer within {self.timeout:g} s"
            ) from None
        except (OSError, DovecotProtocolError) as error:
            raise DovecotUnavailable(f"{_where(self.target)}: {error}") from None

    def _handshake_only(self) -> tuple[str, ...]:
        try:
            with self._connect(self.target, self.timeout) as conn:
                codec = AuthCodec()
                conn.sendall(codec.hello(os.getpid()))
                while data := conn.recv(READ_SIZE):
                    for event in codec.receive(data):
                        if isinstance(event, Handshake):
                            return tuple(
                                m.name for m in event.mechanisms if "private" not in m.flags
                            )
                raise DovecotProtocolError("connection closed before the mechanisms")
        except TimeoutError:
            raise DovecotUnavailable(
                f"{_where(self.target)}: no answer within {self.timeout:g} s"
            ) from None
        except (OSError, DovecotProtocolError) as error:
            raise DovecotUnavailable(f"{_where(self.target)}: {error}") from None


def _connect(target: DovecotSocket, timeout: float) -> socket.socket:
    if target.path is not None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(target.path)
        except BaseException:
            conn.close()
            raise
        return conn
    assert target.address is not None
    conn = socket.create_connection((target.address.host, target.address.port), timeout=timeout)
    conn.settimeout(timeout)
    return conn
