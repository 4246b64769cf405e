"""The account store: domains, users (mailboxes) and aliases in one SQLite file.

Every method is one statement or one transaction on a connection in autocommit mode, so a
read always sees the last change any process committed: ``hato user add`` in one process is
seen by the server's next lookup in another, with no cache to invalidate.
"""

from __future__ import annotations

import functools
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hato.accounts._address import (
    Address,
    nfc,
    normalize_domain,
    parse_address,
    parse_alias_source,
)
from hato.accounts._errors import AccountError, InvalidInput
from hato.accounts._password import hash_password, verify_password_hash

__all__ = ["ACCOUNTS_FILE", "AccountStore", "Alias", "User"]

ACCOUNTS_FILE = "accounts.sqlite3"

# 2: local parts and their keys in Unicode NFC (version 1 stored them as typed).
_SCHEMA_VERSION = 2
# Local parts are kept as written (local_part) and found through two keys: exact_key, the
# local part without quoting, and fold_key, its casefold(). Both are stored so that the
# case_sensitive setting can change without rewriting the table. A catch-all alias has
# the empty local part.
_SCHEMA = """
CREATE TABLE domains (
    name    TEXT PRIMARY KEY,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE users (
    domain     TEXT NOT NULL,
    exact_key  TEXT NOT NULL,
    fold_key   TEXT NOT NULL,
    local_part TEXT NOT NULL,
    password   TEXT,
    quota      INTEGER,
    created    REAL NOT NULL,
    PRIMARY KEY (domain, exact_key)
) WITHOUT ROWID;
CREATE INDEX users_fold ON users (domain, fold_key);
CREATE TABLE aliases (
    id         INTEGER PRIMARY KEY,
    domain     TEXT NOT NULL,
    exact_key  TEXT NOT NULL,
    fold_key   TEXT NOT NULL,
    local_part TEXT NOT NULL,
    created    REAL NOT NULL,
    UNIQUE (domain, exact_key)
);
CREATE INDEX aliases_fold ON aliases (domain, fold_key);
CREATE TABLE alias_targets (
    alias_id INTEGER NOT NULL REFERENCES aliases (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    target   TEXT NOT NULL,
    PRIMARY KEY (alias_id, position)
) WITHOUT ROWID;
"""
_USER_COLUMNS = "local_part, domain, quota, password IS NOT NULL, created"
# Seconds a statement waits for another process's write (a CLI command beside the server).
_BUSY_TIMEOUT = 10.0
# Most query results snapshot() keeps; past it the memory starts over.
_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A mailbox. ``quota`` is in bytes (None: unlimited); the password is never here."""

    address: str
    local_part: str
    domain: str
    quota: int | None
    has_password: bool
    created: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Alias:
    """``source`` (``local@domain``, or ``@domain`` for the catch-all) and where it leads."""

    source: str
    targets: tuple[str, ...]


@contextmanager
def _translated(path: Path, what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise AccountError(f"account store {path}: cannot {what}: {exc}") from exc


@functools.cache
def _decoy_hash() -> str:
    """A hash no password matches, checked when there is no real one to keep timing even."""
    return hash_password(secrets.token_urlsafe(24))


class AccountStore:
    """Domains, users and aliases in ``path`` (SQLite in WAL mode), created if missing.

    ``case_sensitive`` decides whether ``Alice@d`` and ``alice@d`` can be two users, and how
    lookups compare unless told otherwise. ``config_domains`` are local domains that come from
    the configuration rather than the store: users and aliases may be added to them too.
    Safe to share between threads.
    """

    def __init__(
        self,
        path: Path,
        *,
        case_sensitive: bool = False,
        config_domains: Collection[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._case_sensitive = case_sensitive
        self._config_domains = frozenset(normalize_domain(d) for d in config_domains)
        self._clock = clock
        self._lock = threading.Lock()
        # snapshot(): reads answered from memory while the store is unchanged.
        self._cache: dict[tuple[str, tuple[object, ...]], list[tuple[Any, ...]]] = {}
        self._version: int | None = None
        self._local = threading.local()
        with _translated(path, "open it"):
            path.parent.mkdir(parents=True, exist_ok=True)
            # Password hashes live here: owner-only, and SQLite gives -wal and -shm files the
            # database file's mode.
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            self._conn = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            try:
                self._prepare()
            except BaseException:
                self._conn.close()
                raise

    def _prepare(self) -> None:
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise AccountError(f"account store {self._path}: cannot use WAL mode (got {mode!r})")
        # Changes are few and made by people: each is on disk before the command returns.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        with self._transaction():
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # Not executescript(): it would commit first, outside this transaction.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            elif version == 1:
                _migrate_to_nfc(conn)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            elif version != _SCHEMA_VERSION:
                raise AccountError(
                    f"account store {self._path}: schema version {version} is not one this"
                    f" Hato knows ({_SCHEMA_VERSION}); is it a newer Hato's?"
                )

    @property
    def path(self) -> Path:
        return self._path

    @property
    def case_sensitive(self) -> bool:
        return self._case_sensitive

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside are answered from memory while the store has not changed.

        Whether it changed is asked once, on entry (``PRAGMA data_version`` moves when any
        other connection, such as a ``hato user`` command, commits; our own writes clear
        the memory), so a lookup made of several queries costs one query when nothing
        changed, and a change is seen by the next lookup, never a stale one.
        """
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._lock, _translated(self._path, "read"):
                version = self._conn.execute("PRAGMA data_version").fetchone()[0]
                if version != self._version:
                    self._cache.clear()
                    self._version = version
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE so a check and its write see the same state."""
        with self._lock, _translated(self._path, "write"):
            self._cache.clear()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.rollback()
                raise

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        cached = getattr(self._local, "depth", 0) > 0
        with self._lock, _translated(self._path, "read"):
            if not cached:
                return self._conn.execute(sql, params).fetchall()
            rows = self._cache.get((sql, params))
            if rows is None:
                rows = self._conn.execute(sql, params).fetchall()
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[(sql, params)] = rows
            return list(rows)

    def _match(self, address: Address, case_sensitive: bool | None) -> tuple[str, str, str]:
        """(column, value, exact value) that find ``address``'s local part in a table."""
        sensitive = self._case_sensitive if case_sensitive is None else case_sensitive
        key = address.key(sensitive)
        exactly = sensitive and not address.is_postmaster
        return ("exact_key" if exactly else "fold_key"), key, address.content

    def _require_local(self, domain: str) -> None:
        if not self.is_local_domain(domain):
            raise AccountError(
                f"domain {domain} is not local; add it with: hato domain add {domain}"
            )

    # -- domains ------------------------------------------------------------------------

    def add_domain(self, name: str) -> str:
        """Make ``name`` local; returns it normalized (lowercase A-label)."""
        domain = normalize_domain(name)
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
                raise AccountError(f"domain {domain} already exists")
            conn.execute("INSERT INTO domains VALUES (?, ?)", (domain, self._clock()))
        return domain

    def remove_domain(self, name: str, *, force: bool = False) -> None:
        """Remove a domain; refused while it has users or aliases, unless ``force``, which
        removes them with it. A domain that stays local through the configuration keeps its
        users and aliases either way."""
        domain = normalize_domain(name)
        with self._transaction() as conn:
            if not conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
                raise AccountError(f"domain {domain} is not in the account store")
            if domain not in self._config_domains:
                users, aliases = self._count(conn, domain)
                if (users or aliases) and not force:
                    raise AccountError(
                        f"domain {domain} still has {_plural(users, 'user')} and"
                        f" {_plural(aliases, 'alias')}; remove them first, or use --force"
                        " to remove them with the domain"
                    )
                conn.execute("DELETE FROM users WHERE domain = ?", (domain,))
                conn.execute("DELETE FROM aliases WHERE domain = ?", (domain,))
            conn.execute("DELETE FROM domains WHERE name = ?", (domain,))

    @staticmethod
    def _count(conn: sqlite3.Connection, domain: str) -> tuple[int, int]:
        users = conn.execute("SELECT count(*) FROM users WHERE domain = ?", (domain,))
        aliases = conn.execute("SELECT count(*) FROM aliases WHERE domain = ?", (domain,))
        return int(users.fetchone()[0]), int(aliases.fetchone()[0])

    def domains(self) -> tuple[str, ...]:
        """The domains in the store (not those of the configuration), sorted."""
        return tuple(str(row[0]) for row in self._read("SELECT name FROM domains ORDER BY name"))

    def has_domain(self, name: str) -> bool:
        """Whether the store holds ``name`` (which must already be normalized)."""
        return bool(self._read("SELECT 1 FROM domains WHERE name = ?", (name,)))

    def is_local_domain(self, name: str) -> bool:
        """Whether ``name`` (normalized) is local through the configuration or the store."""
        return name in self._config_domains or self.has_domain(name)

    def counts(self, domain: str) -> tuple[int, int]:
        """How many users and aliases ``domain`` has."""
        with self._lock, _translated(self._path, "read"):
            return self._count(self._conn, normalize_domain(domain))

    # -- users --------------------------------------------------------------------------

    def add_user(self, address: str, password: str | None = None, quota: int | None = None) -> User:
        """Add a mailbox; without a password it receives mail but cannot log in."""
        user = parse_address(address)
        _check_quota(quota)
        hashed = None if password is None else hash_password(password)
        self._require_local(user.domain)
        column, key, exact = self._match(user, None)
        created = self._clock()
        with self._transaction() as conn:
            found = conn.execute(
                f"SELECT local_part FROM users WHERE domain = ? AND {column} = ?",
                (user.domain, key),
            ).fetchone()
            if found is not None:
                raise AccountError(f"user {found[0]}@{user.domain} already exists")
            conn.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user.domain, exact, user.key(False), user.local_part, hashed, quota, created),
            )
        return User(
            address=user.text,
            local_part=user.local_part,
            domain=user.domain,
            quota=quota,
            has_password=hashed is not None,
            created=created,
        )

    def remove_user(self, address: str) -> None:
        user = parse_address(address)
        with self._transaction() as conn:
            exact = self._user_key(conn, user)
            if exact is None:
                raise AccountError(f"no such user: {user.text}")
            conn.execute(
                "DELETE FROM users WHERE domain = ? AND exact_key = ?", (user.domain, exact)
            )

    def set_password(self, address: str, password: str | None) -> None:
        """Set a new password, or with None remove it (the mailbox can no longer log in)."""
        user = parse_address(address)
        hashed = None if password is None else hash_password(password)
        with self._transaction() as conn:
            exact = self._user_key(conn, user)
            if exact is None:
                raise AccountError(f"no such user: {user.text}")
            conn.execute(
                "UPDATE users SET password = ? WHERE domain = ? AND exact_key = ?",
                (hashed, user.domain, exact),
            )

    def set_quota(self, address: str, quota: int | None) -> None:
        """Set the mailbox quota in bytes, or with None remove it (unlimited)."""
        user = parse_address(address)
        _check_quota(quota)
        with self._transaction() as conn:
            exact = self._user_key(conn, user)
            if exact is None:
                raise AccountError(f"no such user: {user.text}")
            conn.execute(
                "UPDATE users SET quota = ? WHERE domain = ? AND exact_key = ?",
                (quota, user.domain, exact),
            )

    def _user_key(self, conn: sqlite3.Connection, user: Address) -> str | None:
        """The exact_key of the row ``user`` names, inside a transaction."""
        column, key, exact = self._match(user, None)
        row = conn.execute(
            f"SELECT exact_key FROM users WHERE domain = ? AND {column} = ?"
            " ORDER BY exact_key = ? DESC, created LIMIT 1",
            (user.domain, key, exact),
        ).fetchone()
        return None if row is None else str(row[0])

    def get_user(
        self, address: str | Address, *, case_sensitive: bool | None = None
    ) -> User | None:
        """The user ``address`` names, or None. With local parts compared case-insensitively,
        a row spelled exactly as asked wins over one that differs in case only."""
        user = address if isinstance(address, Address) else parse_address(address)
        column, key, exact = self._match(user, case_sensitive)
        rows = self._read(
            f"SELECT {_USER_COLUMNS} FROM users WHERE domain = ? AND {column} = ?"
            " ORDER BY exact_key = ? DESC, created LIMIT 1",
            (user.domain, key, exact),
        )
        return _user(rows[0]) if rows else None

    def users(self, domain: str | None = None) -> tuple[User, ...]:
        """Every user, or those of ``domain``, sorted by domain and local part."""
        order = " ORDER BY domain, fold_key, exact_key"
        if domain is None:
            rows = self._read(f"SELECT {_USER_COLUMNS} FROM users" + order)
        else:
            where = " WHERE domain = ?"
            rows = self._read(
                f"SELECT {_USER_COLUMNS} FROM users" + where + order, (normalize_domain(domain),)
            )
        return tuple(_user(row) for row in rows)

    def verify_password(self, address: str, password: str) -> bool:
        """Whether ``password`` is the user's; False for unknown users and users without one.

        Takes as long for an unknown user as for a known one, so timing does not tell which
        users exist. A damaged stored hash raises AccountError naming the fix.
        """
        try:
            user = parse_address(address)
        except InvalidInput:
            user = None
        rows = [] if user is None else self._password_rows(user)
        stored = rows[0][0] if rows else None
        if not isinstance(stored, str):
            verify_password_hash(password, _decoy_hash())
            return False
        try:
            return verify_password_hash(password, stored)
        except ValueError:
            raise AccountError(
                f"the stored password of {address} is damaged; set a new one"
                f" with: hato user passwd {address}"
            ) from None

    def _password_rows(self, user: Address) -> list[tuple[Any, ...]]:
        column, key, exact = self._match(user, None)
        return self._read(
            f"SELECT password FROM users WHERE domain = ? AND {column} = ?"
            " ORDER BY exact_key = ? DESC, created LIMIT 1",
            (user.domain, key, exact),
        )

    # -- aliases ------------------------------------------------------------------------

    def add_alias(self, source: str, targets: Iterable[str] | str) -> Alias:
        """Add ``targets`` to the alias ``source`` (created if new); returns the alias.

        ``source`` is ``local@domain`` in a local domain, or ``@domain`` for its catch-all.
        Targets are addresses, local or remote; one already there is not added twice, and
        ``source`` itself as a target means "the mailbox of that name too".
        """
        alias = parse_alias_source(source)
        wanted = _parse_targets([targets] if isinstance(targets, str) else targets)
        self._require_local(alias.domain)
        with self._transaction() as conn:
            row = self._alias_row(conn, alias, None)
            present: list[str] = []
            if row is None:
                cursor = conn.execute(
                    "INSERT INTO aliases (domain, exact_key, fold_key, local_part, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        alias.domain,
                        alias.content,
                        alias.key(False),
                        alias.local_part,
                        self._clock(),
                    ),
                )
                assert cursor.lastrowid is not None  # set by every INSERT into a rowid table
                alias_id, shown = cursor.lastrowid, alias.text
            else:
                alias_id, shown = row
                present = self._targets(conn, alias_id)
            known = {self._target_key(t) for t in present}
            for target in wanted:
                if self._target_key(target.text) not in known:
                    known.add(self._target_key(target.text))
                    present.append(target.text)
                    conn.execute(
                        "INSERT INTO alias_targets VALUES (?, ?, ?)",
                        (alias_id, len(present), target.text),
                    )
        return Alias(source=shown, targets=tuple(present))

    def remove_alias(self, source: str, target: str | None = None) -> None:
        """Remove the alias, or only its ``target`` (and the alias with its last target)."""
        alias = parse_alias_source(source)
        gone = None if target is None else self._target_key(parse_address(target).text)
        with self._transaction() as conn:
            row = self._alias_row(conn, alias, None)
            if row is None:
                raise AccountError(f"no such alias: {alias.text}")
            alias_id, shown = row
            present = self._targets(conn, alias_id)
            keep = [t for t in present if self._target_key(t) != gone]
            if gone is not None and len(keep) == len(present):
                raise AccountError(f"alias {shown} has no target {target}")
            conn.execute("DELETE FROM alias_targets WHERE alias_id = ?", (alias_id,))
            if gone is None or not keep:
                conn.execute("DELETE FROM aliases WHERE id = ?", (alias_id,))
                return
            conn.executemany(
                "INSERT INTO alias_targets VALUES (?, ?, ?)",
                [(alias_id, position, t) for position, t in enumerate(keep, 1)],
            )

    def get_alias(
        self, source: str | Address, *, case_sensitive: bool | None = None
    ) -> Alias | None:
        """The alias ``source`` names (``@domain`` or an Address with no local part: the
        catch-all), or None."""
        alias = source if isinstance(source, Address) else parse_alias_source(source)
        with self._lock, _translated(self._path, "read"):
            # One read transaction, so the alias and its targets come from one snapshot.
            self._conn.execute("BEGIN")
            try:
                row = self._alias_row(self._conn, alias, case_sensitive)
                targets = [] if row is None else self._targets(self._conn, row[0])
            finally:
                self._conn.execute("COMMIT")
        return None if row is None else Alias(source=row[1], targets=tuple(targets))

    def alias_targets(self, source: str) -> tuple[str, ...] | None:
        """Where the alias ``source`` leads, or None if there is no such alias."""
        alias = self.get_alias(source)
        return None if alias is None else alias.targets

    def aliases(self, domain: str | None = None) -> tuple[Alias, ...]:
        """Every alias, or those of ``domain``, sorted by domain and source."""
        sql = (
            "SELECT a.local_part || '@' || a.domain, t.target FROM aliases AS a"
            " JOIN alias_targets AS t ON t.alias_id = a.id{where}"
            " ORDER BY a.domain, a.fold_key, a.exact_key, t.position"
        )
        if domain is None:
            rows = self._read(sql.format(where=""))
        else:
            rows = self._read(sql.format(where=" WHERE a.domain = ?"), (normalize_domain(domain),))
        grouped: dict[str, list[str]] = {}
        for source, target in rows:
            grouped.setdefault(str(source), []).append(str(target))
        return tuple(Alias(source=s, targets=tuple(t)) for s, t in grouped.items())

    def _alias_row(
        self, conn: sqlite3.Connection, alias: Address, case_sensitive: bool | None
    ) -> tuple[int, str] | None:
        column, key, exact = self._match(alias, case_sensitive)
        row = conn.execute(
            f"SELECT id, local_part || '@' || domain FROM aliases WHERE domain = ? AND {column} = ?"
            " ORDER BY exact_key = ? DESC, created LIMIT 1",
            (alias.domain, key, exact),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    @staticmethod
    def _targets(conn: sqlite3.Connection, alias_id: int) -> list[str]:
        rows = conn.execute(
            "SELECT target FROM alias_targets WHERE alias_id = ? ORDER BY position", (alias_id,)
        )
        return [str(row[0]) for row in rows]

    def _target_key(self, target: str) -> tuple[str, str]:
        address = parse_address(target)
        return address.key(self._case_sensitive), address.domain


def _migrate_to_nfc(conn: sqlite3.Connection) -> None:
    """Rewrite version 1's local parts and keys in NFC, as every lookup now asks for them.

    A row whose NFC form another row already has (the two look-alike users the change is
    for) keeps its old keys: nothing is deleted, and ``hato user list`` still shows both.
    """
    for table, key_column in (("users", "exact_key"), ("aliases", "id")):
        rows = conn.execute(f"SELECT {key_column}, domain, local_part FROM {table}").fetchall()
        for row_key, domain, local_part in rows:
            address = Address(str(local_part), str(domain))  # NFC from here on
            if address.local_part == local_part:
                continue
            where = "domain = ? AND exact_key = ?" if table == "users" else "id = ?"
            params = (domain, row_key) if table == "users" else (row_key,)
            with suppress(sqlite3.IntegrityError):
                conn.execute(
                    f"UPDATE {table} SET local_part = ?, exact_key = ?, fold_key = ? WHERE {where}",
                    (address.local_part, address.content, address.key(False), *params),
                )
    for alias_id, position, target in conn.execute("SELECT * FROM alias_targets").fetchall():
        if nfc(str(target)) != target:
            conn.execute(
                "UPDATE alias_targets SET target = ? WHERE alias_id = ? AND position = ?",
                (nfc(str(target)), alias_id, position),
            )


def _user(row: tuple[Any, ...]) -> User:
    local_part, domain, quota, has_password, created = row
    return User(
        address=f"{local_part}@{domain}",
        local_part=local_part,
        domain=domain,
        quota=quota,
        has_password=bool(has_password),
        created=float(created),
    )


def _check_quota(quota: int | None) -> None:
    if quota is None:
        return
    if isinstance(quota, bool) or not isinstance(quota, int) or quota <= 0:
        raise InvalidInput(f"a quota is a positive number of bytes, not {quota!r}")


def _parse_targets(targets: Iterable[str]) -> list[Address]:
    parsed = [parse_address(target) for target in targets]
    if not parsed:
        raise InvalidInput("an alias needs at least one target")
    return parsed


def _plural(count: int, noun: str) -> str:
    return (
        f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('s') else 's'}"
    )
