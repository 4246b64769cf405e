"""Account changes as ``hato domain``/``hato user`` and the HTTP API make them: one set of
rules, each change returning what it did in words and what its author may not expect.

The store refuses what cannot be done (``AccountError``, ``InvalidInput``); this layer adds
the rules that need more than the store (a domain that comes from the configuration) and
the warnings that do not stop a change (an alias that keeps mail out of a new mailbox, a
quota below what the mailbox already holds). What it needs from the layers above (the
router's view of aliases, the delivery side's mailbox usage) is handed in as callables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from hato.accounts._address import display_domain, normalize_domain, parse_address
from hato.accounts._errors import AccountError, InvalidInput
from hato.accounts._store import AccountStore, Alias, User

__all__ = ["AccountAdmin", "Change", "format_size", "named_domain", "parse_size"]

_SIZE = re.compile(r"([0-9]+)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
# Sizes use binary multiples, as Dovecot's quota settings do: 1K is 1024 bytes.
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

# (domain, local part, quota) -> bytes the mailbox holds, as the delivery side counts them.
MailboxUsage = Callable[[str, str, int | None], int]
# The alias of a user's own address when it keeps mail out of the mailbox, or None.
Shadowing = Callable[[User], Alias | None]


def parse_size(text: str) -> int:
    """Bytes in a size such as ``100M`` (binary multiples K, M, G, T); InvalidInput if bad."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"{text!r} is not a size; write bytes, or a number with K, M, G or T")
    size = int(match[1]) * _UNITS[match[2].upper()]
    if size <= 0:
        raise InvalidInput("a quota must be more than 0 bytes")
    return size


def format_size(size: int | None) -> str:
    """``100M`` for 104857600: the largest unit that divides the size exactly."""
    if size is None:
        return "-"
    for unit in "TGMK":
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def named_domain(domain: str) -> str:
    """``xn--bcher-kva.example (bücher.example)``: the A-label, and the Unicode form if other."""
    shown = display_domain(domain)
    return domain if shown == domain else f"{domain} ({shown})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A change made: ``done`` in words (what the CLI prints), ``warnings`` beside it, and
    the domain or user it concerns."""

    done: str
    warnings: tuple[str, ...] = ()
    domain: str | None = None
    user: User | None = None


class AccountAdmin:
    """The account changes of the CLI and the API over one ``AccountStore``.

    ``config_domains`` are the configuration's local domains (``server.local_domains``);
    ``force_hint`` says how the caller asks for a forced removal (``--force``,
    ``?force=true``), so a refusal names what the person in front of it can do.
    """

    def __init__(
        self,
        store: AccountStore,
        *,
        config_domains: Collection[str],
        usage: MailboxUsage | None = None,
        shadowing: Shadowing | None = None,
        force_hint: str = "--force",
    ) -> None:
        self.store = store
        self._configured = frozenset(normalize_domain(d) for d in config_domains)
        self._usage = usage
        self._shadowing = shadowing
        self._force_hint = force_hint

    # -- domains --------------------------------------------------------------------------

    def add_domain(self, name: str) -> Change:
        added = self.store.add_domain(name)
        note = " (it is also in server.local_domains)" if added in self._configured else ""
        return Change(done=f"added domain {named_domain(added)}{note}", domain=added)

    def remove_domain(self, name: str, *, force: bool = False, where: str = "") -> Change:
        """Remove a domain from the store. Refused for one that only the configuration
        (``where``: which file) makes local, and while it has users or aliases unless
        ``force``."""
        wanted = normalize_domain(name)
        store = self.store
        configured = wanted in self._configured
        if configured and not store.has_domain(wanted):
            raise AccountError(
                f"domain {wanted} comes from server.local_domains"
                f" ({where or 'the configuration'}), not the store;"
                " change the configuration to remove it"
            )
        users, aliases = store.counts(wanted)
        if (users or aliases) and not force and not configured:
            raise AccountError(
                f"domain {wanted} still has {_count(users, 'user')} and"
                f" {_count(aliases, 'alias')}; remove them first, or use {self._force_hint}"
                " to remove them with the domain"
            )
        store.remove_domain(wanted, force=force)
        done = f"removed domain {named_domain(wanted)}"
        warnings: list[str] = []
        if configured:
            done += " from the store; it stays local through server.local_domains"
        elif users or aliases:
            done += f" with {users} user(s) and {aliases} alias(es)"
            warnings.append(
                f"{_count(users, 'user')} and {_count(aliases, 'alias')} of {wanted} were"
                " removed with it; mail already delivered to its mailboxes stays on disk"
            )
        return Change(done=done, warnings=tuple(warnings), domain=wanted)

    # -- users ----------------------------------------------------------------------------

    def add_user(self, address: str, password: str | None, quota: int | None) -> Change:
        """Add a mailbox (without a password it receives mail but cannot log in)."""
        parse_address(address)
        added = self.store.add_user(address, password, quota)
        details = [f"quota {format_size(quota)}"] if quota else []
        details.append("password set" if added.has_password else "no password: it cannot log in")
        warnings = []
        shadow = self._shadowing(added) if self._shadowing is not None else None
        if shadow is not None:
            warnings.append(
                f"the alias {shadow.source} -> {', '.join(shadow.targets)} wins at delivery:"
                f" mail for {added.address} goes to {', '.join(shadow.targets)}, not into this"
                f" mailbox; to keep a copy here: hato alias add {shadow.source} {added.address}"
            )
        return Change(
            done=f"added user {added.address} ({', '.join(details)})",
            warnings=tuple(warnings),
            user=added,
        )

    def existing_user(self, address: str) -> User:
        found = self.store.get_user(address)
        if found is None:
            raise AccountError(f"no such user: {parse_address(address).text}")
        return found

    def remove_user(self, address: str) -> Change:
        """Remove a user; the mail already delivered to it stays on disk."""
        found = self.existing_user(address)
        self.store.remove_user(found.address)
        return Change(done=f"removed user {found.address}", user=found)

    def set_password(self, address: str, password: str | None) -> Change:
        """A new password, or with None none (the user can no longer log in)."""
        found = self.existing_user(address)
        self.store.set_password(found.address, password)
        done = "changed the password of" if password is not None else "removed the password of"
        return Change(done=f"{done} {found.address}", user=self.existing_user(found.address))

    def set_quota(self, address: str, quota: int | None) -> Change:
        """A new quota in bytes, or with None none; a quota below what the mailbox holds
        is set, with a warning: new mail is refused until the mailbox shrinks."""
        found = self.existing_user(address)
        self.store.set_quota(found.address, quota)
        warnings = []
        if quota is not None and self._usage is not None:
            held = self._usage(found.domain, found.local_part, quota)
            if held >= quota:
                warnings.append(
                    f"{found.address} already holds {_bytes(held)}, at or over the new quota"
                    f" of {format_size(quota)}: new mail for it is refused"
                    " (452 4.2.2) until messages are deleted or the quota is raised"
                )
        shown = format_size(quota) if quota is not None else "none"
        return Change(
            done=f"set the quota of {found.address} to {shown}",
            warnings=tuple(warnings),
            user=self.existing_user(found.address),
        )


def _bytes(size: int) -> str:
    shown = format_size(size)
    return f"{size} bytes" if shown == str(size) else f"{shown} ({size} bytes)"


def _count(count: int, noun: str) -> str:
    return (
        f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('s') else 's'}"
    )
