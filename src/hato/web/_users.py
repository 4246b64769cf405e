"""Who may use the HTTP service: console users (scrypt passwords) and API tokens.

Both live in ``DATA/web.sqlite3`` (WAL, owner-only), read afresh on every check so that
``hato web passwd`` and ``hato web token`` reach a running server at once. A token is
shown once when made; only its SHA-256 is kept (it is 256 random bits, so a slow hash
would add nothing), while passwords get the account store's scrypt hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hato.accounts import InvalidInput, hash_password, verify_password_hash

__all__ = [
    "ADMIN",
    "READ_ONLY",
    "ROLES",
    "WEB_FILE",
    "Principal",
    "TokenInfo",
    "WebUserError",
    "WebUsers",
]

WEB_FILE = "web.sqlite3"
ADMIN = "admin"
READ_ONLY = "read-only"
ROLES = (ADMIN, READ_ONLY)
Role = Literal["admin", "read-only"]
TOKEN_PREFIX = "hato_"
_BUSY_TIMEOUT = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS user (
    name TEXT PRIMARY KEY, password TEXT NOT NULL, role TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS token (
    name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class WebUserError(Exception):
    """A refused change (no such token, a name taken) or a damaged store; says which."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a request is from: a console user or a token, and what they may do."""

    name: str
    role: str
    via: Literal["session", "token"]

    @property
    def may_write(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    name: str
    role: str
    created: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _check_name(name: str) -> str:
    if not name or len(name) > 64 or not name.isprintable() or name.strip() != name:
        raise InvalidInput("a name is 1 to 64 printable characters, without spaces around")
    return name


class WebUsers:
    """The users and tokens in ``path`` (created if missing); safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            self._conn = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise WebUserError(f"{path}: {error}") from error

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> WebUsers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.IntegrityError as error:
                raise WebUserError(f"already exists ({error})") from error
            except sqlite3.Error as error:
                raise WebUserError(f"{self.path}: {error}") from error

    # -- console users --------------------------------------------------------------------

    def has_users(self) -> bool:
        return bool(self._run("SELECT 1 FROM user LIMIT 1"))

    def set_password(self, name: str, password: str, role: str = ADMIN) -> None:
        """Create the user ``name`` or change its password (InvalidInput if empty)."""
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        encoded = hash_password(password)
        self._run(
            "INSERT INTO user (name, password, role, created) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET password = excluded.password",
            (_check_name(name), encoded, role, time.time()),
        )

    def check_password(self, name: str, password: str) -> Principal | None:
        """The user, when the password is theirs (slow on purpose: scrypt; run in a thread)."""
        rows = self._run("SELECT password, role FROM user WHERE name = ?", (name,))
        if not rows:
            hash_password(password or "x")  # as slow as a real check: no user-name oracle
            return None
        encoded, role = str(rows[0][0]), str(rows[0][1])
        try:
            if not verify_password_hash(password, encoded):
                return None
        except (ValueError, InvalidInput):
            return None
        return Principal(name=name, role=role, via="session")

    def role(self, name: str) -> str | None:
        rows = self._run("SELECT role FROM user WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    # -- API tokens -----------------------------------------------------------------------

    def add_token(self, name: str, *, read_only: bool = False) -> str:
        """A new token named ``name``; the secret is returned here and never again."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        role = READ_ONLY if read_only else ADMIN
        self._run(
            "INSERT INTO token (name, digest, role, created) VALUES (?, ?, ?, ?)",
            (_check_name(name), _digest(token), role, time.time()),
        )
        return token

    def tokens(self) -> list[TokenInfo]:
        rows = self._run("SELECT name, role, created FROM token ORDER BY name")
        return [TokenInfo(name=str(n), role=str(r), created=float(str(c))) for n, r, c in rows]

    def remove_token(self, name: str) -> None:
        if not self._run("DELETE FROM token WHERE name = ? RETURNING name", (name,)):
            raise WebUserError(f"no token named {name!r}")

    def check_token(self, token: str) -> Principal | None:
        digest = _digest(token)
        rows = self._run("SELECT name, role, digest FROM token WHERE digest = ?", (digest,))
        if not rows or not hmac.compare_digest(str(rows[0][2]), digest):
            return None
        return Principal(name=str(rows[0][0]), role=str(rows[0][1]), via="token")
