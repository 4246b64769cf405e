"""SMTP AUTH (RFC 4954) for sessions: what is offered, the SASL exchange, the password check.

:class:`Authenticator` is one per server: the mechanisms and when they are offered
(inside TLS only unless ``auth.allow_plaintext``), the ban limiter, and the password
check in a thread. :class:`SaslExchange` is one per session: it turns ``AUTH`` and the
client's answers (decoded by :mod:`._sasl`) into a challenge, a refusal or
:class:`Credentials` to verify. The engine masks AUTH lines in transcripts as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

from .. import policy
from ..accounts import AccountError, InvalidInput, parse_address
from ..config import AuthSettings
from ..events import AuthSucceeded, EventLog, InternalError
from ..smtp import Reply, reply
from ._sasl import LOGIN_PASSWORD, LOGIN_USERNAME, SaslError, decode_login, decode_plain

__all__ = [
    "AuthOutcome",
    "Authenticator",
    "ClientPasswordCheck",
    "Credentials",
    "PasswordCheck",
    "SaslExchange",
]

R_AUTH_OK = reply(235, "2.7.0", "Authentication successful")
R_AUTH_FAILED = reply(535, "5.7.8", "Authentication credentials invalid")
R_AUTH_MALFORMED = reply(501, "5.5.2", "Cannot decode AUTH response")
R_AUTH_TEMPFAIL = reply(454, "4.7.0", "Temporary authentication failure")
BANNED = "client IP banned after failed AUTH attempts"


class PasswordCheck(Protocol):
    """Whose passwords AUTH checks (``accounts.AccountStore``); called in a thread."""

    def verify_password(self, address: str, password: str) -> bool: ...


class ClientPasswordCheck(Protocol):
    """A password service that wants the client's IP (Dovecot's, for its own penalties)."""

    def verify_password(self, address: str, password: str, *, client_ip: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client sent; ``password`` None: a failure whatever it was (authzid)."""

    mechanism: str
    user: str
    password: str | None


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """The reply for the client; ``user`` once authenticated; the refusal, if refused."""

    reply: Reply
    user: str | None = None
    refusal: policy.Decision | None = None


class Authenticator:
    def __init__(
        self,
        accounts: PasswordCheck,
        settings: AuthSettings,
        *,
        hostname: str,
        log: EventLog,
        limiter: policy.AuthLimiter | None = None,
        mechanisms: tuple[str, ...] | None = None,
        by_client: ClientPasswordCheck | None = None,
    ) -> None:
        self.accounts = accounts
        # When set, passwords are checked there instead, with the client's IP.
        self.by_client = by_client
        self.settings = settings
        # Those the password check's own service offers (Dovecot's), else the configured.
        self._mechanisms = settings.mechanisms if mechanisms is None else mechanisms
        self.log = log
        self.limiter = limiter or policy.AuthLimiter(
            max_failures=settings.max_failures,
            window=settings.failure_window,
            ban_time=settings.ban_time,
        )
        self._banned = policy.Decision(
            reply=reply(421, "4.7.0", f"{hostname} Error: too many failed authentications"),
            reason=BANNED,
        )

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """Every mechanism configured (none: AUTH is not offered anywhere)."""
        return tuple(self._mechanisms)

    def offered(self, *, tls: bool) -> tuple[str, ...]:
        """AUTH is offered inside TLS only, unless auth.allow_plaintext says otherwise."""
        return self.mechanisms if tls or self.settings.allow_plaintext else ()

    def ban(self, client_ip: str) -> policy.Decision | None:
        """A ban holds in every session of the IP, those opened before it included."""
        return self._banned if self.limiter.banned(client_ip) else None

    async def verify(
        self, credentials: Credentials, *, client_ip: str, session: str
    ) -> AuthOutcome:
        """The password check in a thread; failures count towards the IP's ban."""
        user, mechanism, limiter = credentials.user, credentials.mechanism, self.limiter
        banned = limiter.banned(client_ip)
        password = credentials.password
        try:
            ok = (
                not banned
                and password is not None
                and await asyncio.to_thread(self._check, user, password, client_ip)
            )
        except AccountError as error:
            self.log.emit(InternalError(where="auth", error=str(error), session=session))
            reason = f"authentication error for user {user!r}"
            return AuthOutcome(
                R_AUTH_TEMPFAIL, refusal=policy.Decision(reply=R_AUTH_TEMPFAIL, reason=reason)
            )
        if banned or limiter.banned(client_ip):
            # Banned before or while the password was checked: right or wrong, no entry.
            return AuthOutcome(self._banned.reply, refusal=self._banned)
        if ok:
            # The address as the store reads it: without the spaces, brackets or final dot
            # the password check forgave, which would otherwise reach replies and logs.
            with contextlib.suppress(InvalidInput):  # another service's user may be a name
                user = parse_address(user).text
            self.log.emit(
                AuthSucceeded(session=session, client_ip=client_ip, user=user, mechanism=mechanism)
            )
            return AuthOutcome(R_AUTH_OK, user=user)
        over = limiter.failed(client_ip)
        await asyncio.sleep(self.settings.failure_delay)
        answer = self._banned.reply if over else R_AUTH_FAILED
        reason = f"authentication failed for user {user!r} ({mechanism})"
        refusal = policy.Decision(reply=answer, reason=reason + (", IP banned" if over else ""))
        return AuthOutcome(answer, refusal=refusal)

    def _check(self, user: str, password: str, client_ip: str) -> bool:
        if self.by_client is not None:
            return self.by_client.verify_password(user, password, client_ip=client_ip)
        return self.accounts.verify_password(user, password)


class SaslExchange:
    """One session's AUTH exchange: PLAIN, or LOGIN's username then password."""

    def __init__(self) -> None:
        # The exchange in progress: ("PLAIN",), ("LOGIN",) or ("LOGIN", username).
        self._state: tuple[str, ...] = ()

    def start(self, mechanism: str, initial: str | None) -> Reply | Credentials | policy.Decision:
        self._state = (mechanism,)
        if initial is None:
            return Reply(334, None, ("" if mechanism == "PLAIN" else LOGIN_USERNAME,))
        return self.respond(initial)

    def respond(self, data: str) -> Reply | Credentials | policy.Decision:
        """The next challenge, the credentials to check, or the refusal of a bad answer."""
        state, self._state = self._state, ()
        try:
            if state == ("PLAIN",):
                authzid, user, password = decode_plain(data)
                # We let nobody act as someone else: a failure like a wrong password.
                return Credentials("PLAIN", user, None if authzid and authzid != user else password)
            if state == ("LOGIN",):
                self._state = ("LOGIN", decode_login(data))
                return Reply(334, None, (LOGIN_PASSWORD,))
            if len(state) == 2:
                return Credentials("LOGIN", state[1], decode_login(data))
            raise SaslError("no AUTH exchange in progress")
        except SaslError as error:
            return policy.Decision(
                reply=R_AUTH_MALFORMED, reason=f"malformed AUTH response: {error}"
            )
