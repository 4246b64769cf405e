"""Local recipient resolution: which mailboxes, remote addresses or failures an address means.

Pure decisions over the account store: the only I/O is the store's reads, one fresh query
each, so a change to the store counts from the next call on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TypeAlias

from hato.accounts import (
    POSTMASTER,
    AccountStore,
    Address,
    Alias,
    InvalidInput,
    User,
    normalize_domain,
    parse_address,
    parse_alias_source,
)

__all__ = [
    "ALIAS_LOOP",
    "BAD_ADDRESS",
    "MAX_ALIAS_DEPTH",
    "UNKNOWN_MAILBOX",
    "AliasMatch",
    "Expansion",
    "Failure",
    "LocalRouter",
    "Lookup",
    "Mailbox",
    "NotLocal",
    "Probe",
    "ProbeCheck",
    "Unknown",
    "reaches",
    "shadowing_alias",
]

# Enhanced status codes (RFC 3463) of the failures an expansion reports.
UNKNOWN_MAILBOX = "5.1.1"  # X.1.1 Bad destination mailbox address
BAD_ADDRESS = "5.1.3"  # X.1.3 Bad destination mailbox address syntax
ALIAS_LOOP = "5.4.6"  # X.4.6 Routing loop detected

# Most aliases one delivery may pass through, one inside the other. Real nesting is a few
# levels; deeper is a mistake, and without a bound a long chain would be followed forever.
MAX_ALIAS_DEPTH = 20
# The local parts a Sender Rewriting Scheme address starts with.
_SRS_TAGS = ("SRS0=", "SRS1=")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A local mailbox, by its canonical address as stored. ``quota`` in bytes, None: none."""

    address: str
    domain: str
    local_part: str
    quota: int | None = None


@dataclass(frozen=True, slots=True)
class AliasMatch:
    """The address is (or falls to) the alias ``source``, which leads to ``targets``."""

    source: str
    targets: tuple[str, ...]

    @property
    def is_catch_all(self) -> bool:
        """The domain's catch-all (``@domain``): the address itself is named by no alias."""
        return self.source.startswith("@")


@dataclass(frozen=True, slots=True)
class Unknown:
    """The domain is local but nothing there answers to the address."""

    address: str


@dataclass(frozen=True, slots=True)
class NotLocal:
    """The domain (normalized, or an address literal as written) is not one of ours."""

    domain: str


@dataclass(frozen=True, slots=True)
class Probe:
    """A live test address (``hato test --receive``): accepted, analysed, delivered nowhere."""

    address: str


Lookup: TypeAlias = Mailbox | AliasMatch | Unknown | NotLocal | Probe

# Whether an address is a test address: True while it is live, False for one of that form
# that is not (expired, never made: refused as unknown), None for any other address.
ProbeCheck = Callable[[str], bool | None]


@dataclass(frozen=True, slots=True)
class Failure:
    """An address an expansion could not deliver to, with its RFC 3463 status and why."""

    address: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class Expansion:
    """Where a message for one address goes: local mailboxes, remote addresses to relay to,
    and the parts that fail. Each list holds an address once, in the order first met."""

    mailboxes: tuple[Mailbox, ...] = ()
    remote: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()


# (local part key, domain): what two addresses share when they name one thing.
_Key = tuple[str, str]


@dataclass(slots=True)
class _Collector:
    mailboxes: dict[_Key, Mailbox] = field(default_factory=dict)
    remote: dict[str, None] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    # Aliases already followed, with the depth they were followed at: the same alias reached
    # again no deeper adds nothing, so fan-in does not multiply the work.
    followed: dict[_Key, int] = field(default_factory=dict)

    def fail(self, address: str, status: str, reason: str) -> None:
        self.failures.setdefault(address, Failure(address, status, reason))

    def result(self) -> Expansion:
        return Expansion(
            tuple(self.mailboxes.values()), tuple(self.remote), tuple(self.failures.values())
        )


class LocalRouter:
    """Resolves recipients against the configured local domains and the account store.

    For ``local@domain`` in a local domain the first match wins: an alias of the full
    address, a user of it; with plus addressing (``user+tag``), an alias then a user of the
    base; postmaster; the domain's catch-all alias (``@domain``). RFC 5321 4.5.1 makes
    postmaster@ of every local domain exist: it leads to the ``postmaster`` mailbox
    (default ``postmaster@<hostname>``), which exists even without a user row.
    """

    def __init__(
        self,
        accounts: AccountStore,
        *,
        config_domains: Collection[str],
        hostname: str,
        delimiter: str = "+",
        case_sensitive: bool = False,
        postmaster: str = "",
        reverse_srs: Callable[[str], str | None] | None = None,
        probe: ProbeCheck | None = None,
        external_users: bool = False,
    ) -> None:
        self._accounts = accounts
        # Users live in another user database (Dovecot's, asked at RCPT): an address of a
        # local domain the store does not know is still a mailbox at delivery, which the
        # LMTP server accepts or refuses itself.
        self._external_users = external_users
        # Test addresses take their names before any alias, user or catch-all can.
        self._probe = probe
        # SRS (the forwarder's rewritten senders): the original address a bounce to one of
        # ours goes back to, or None when it is not a valid one of ours.
        self._reverse_srs = reverse_srs
        self._config_domains = frozenset(normalize_domain(d) for d in config_domains)
        self._hostname = normalize_domain(hostname)
        self._delimiter = delimiter
        self._case_sensitive = case_sensitive
        self._default_postmaster = not postmaster
        try:
            self._postmaster = parse_address(postmaster or f"{POSTMASTER}@{self._hostname}")
        except InvalidInput as exc:
            raise InvalidInput(f"accounts.postmaster: {exc}") from None

    @property
    def postmaster(self) -> str:
        """The address of the mailbox that receives postmaster@ mail of every local domain."""
        return self._postmaster.text

    def is_local_domain(self, domain: str) -> bool:
        """Whether mail for ``domain`` is ours: configured or in the store. IDN-aware; an
        address literal such as ``[192.0.2.1]`` is never local."""
        try:
            name = normalize_domain(domain)
        except InvalidInput:
            return False
        with self._accounts.snapshot():
            return self._is_local(name)

    def lookup(self, address: str) -> Lookup:
        """Whether ``address`` exists here (asked at RCPT time). ``Postmaster`` without a
        domain is postmaster@hostname. Raises InvalidInput for a malformed address."""
        with self._accounts.snapshot():
            return self._lookup(self._parse(address))

    def expand(self, address: str) -> Expansion:
        """Everything ``address`` leads to (asked at delivery time), aliases followed."""
        out = _Collector()
        try:
            start = self._parse(address)
        except InvalidInput as exc:
            out.fail(address, BAD_ADDRESS, str(exc))
            return out.result()
        with self._accounts.snapshot():
            self._follow(start, (), out)
        return out.result()

    # -- lookup ---------------------------------------------------------------------------

    def _parse(self, address: str) -> Address:
        if address.strip().removeprefix("<").removesuffix(">").casefold() == POSTMASTER:
            # RFC 5321 4.5.1: "<Postmaster>" with no domain is the server's own postmaster.
            return Address(POSTMASTER, self._hostname)
        return parse_address(address, allow_literal=True)

    def _is_local(self, domain: str) -> bool:
        return domain in self._config_domains or self._accounts.has_domain(domain)

    def _key(self, address: Address) -> _Key:
        return address.key(self._case_sensitive), address.domain

    def _lookup(self, address: Address) -> Lookup:
        if not self._is_local(address.domain) and not self._is_own_postmaster(address):
            return NotLocal(address.domain)
        if self._reverse_srs is not None and address.local_part[:5].upper() in _SRS_TAGS:
            original = self._reverse_srs(address.text)
            if original is None:
                return Unknown(address.text)
            return AliasMatch(address.text, (original,))
        if self._probe is not None:
            live = self._probe(address.text)
            if live is not None:
                return Probe(address.text) if live else Unknown(address.text)
        found = self._find(address)
        if found is not None:
            return found
        base = self._base(address)
        if base is not None:
            found = self._find(base)
            if found is not None:
                return found
        for candidate in (address, base):
            if candidate is not None and self._is_postmaster(candidate):
                return self._postmaster_lookup(candidate)
        catch_all = self._accounts.get_alias(Address("", address.domain))
        if catch_all is not None:
            return AliasMatch(catch_all.source, catch_all.targets)
        return Unknown(address.text)

    def _find(self, address: Address) -> Mailbox | AliasMatch | None:
        alias = self._accounts.get_alias(address, case_sensitive=self._case_sensitive)
        if alias is not None:
            return AliasMatch(alias.source, alias.targets)
        user = self._accounts.get_user(address, case_sensitive=self._case_sensitive)
        return None if user is None else _mailbox(user)

    def _base(self, address: Address) -> Address | None:
        """``user@domain`` for ``user+tag@domain``; None without a delimiter or a tag."""
        if not self._delimiter:
            return None
        base, delimiter, _ = address.content.partition(self._delimiter)
        if not (delimiter and base):
            return None
        return address.with_content(base)

    def _is_postmaster(self, address: Address) -> bool:
        return address.is_postmaster or self._key(address) == self._key(self._postmaster)

    def _is_own_postmaster(self, address: Address) -> bool:
        # The default postmaster@<hostname> exists even when the hostname is not among the
        # local domains: mail for it must never be relayed back out to ourselves.
        return self._default_postmaster and self._key(address) == self._key(self._postmaster)

    def _postmaster_lookup(self, address: Address) -> Lookup:
        if self._key(address) == self._key(self._postmaster):
            return self._postmaster_mailbox()
        # postmaster@ of another domain: whatever the postmaster address itself resolves to.
        found = self._lookup(self._postmaster)
        if isinstance(found, NotLocal):
            return AliasMatch(address.text, (self._postmaster.text,))
        return found

    def _postmaster_mailbox(self) -> Mailbox:
        return Mailbox(
            self._postmaster.text, self._postmaster.domain, self._postmaster.local_part, None
        )

    # -- expansion ------------------------------------------------------------------------

    def _follow(
        self, address: Address, chain: tuple[tuple[_Key, str], ...], out: _Collector
    ) -> None:
        """Add what ``address`` leads to; ``chain`` is the aliases that led here."""
        found = self._lookup(address)
        match found:
            case Mailbox():
                out.mailboxes.setdefault(self._key(Address(found.local_part, found.domain)), found)
            case NotLocal():
                out.remote.setdefault(address.text)
            case Unknown() if self._external_users and self._is_local(address.domain):
                mailbox = Mailbox(address.text, address.domain, address.local_part, None)
                out.mailboxes.setdefault(self._key(address), mailbox)
            case Unknown():
                out.fail(
                    address.text, UNKNOWN_MAILBOX, f"{address.text}: no such mailbox" + _via(chain)
                )
            case AliasMatch():
                self._follow_alias(address, found, chain, out)
            case Probe():
                pass  # analysed on arrival, delivered nowhere

    def _follow_alias(
        self,
        address: Address,
        alias: AliasMatch,
        chain: tuple[tuple[_Key, str], ...],
        out: _Collector,
    ) -> None:
        source = parse_alias_source(alias.source)
        key = self._key(source)
        names = [name for _, name in chain]
        if any(key == seen for seen, _ in chain):
            reason = "alias loop: " + " -> ".join([*names, alias.source])
            out.fail(address.text, ALIAS_LOOP, reason)
            return
        if len(chain) >= MAX_ALIAS_DEPTH:
            reason = f"aliases nested deeper than {MAX_ALIAS_DEPTH}: " + " -> ".join(
                [*names, alias.source]
            )
            out.fail(address.text, ALIAS_LOOP, reason)
            return
        if out.followed.get(key, MAX_ALIAS_DEPTH + 1) <= len(chain):
            return
        out.followed[key] = len(chain)
        inner = (*chain, (key, alias.source))
        for text in alias.targets:
            try:
                target = parse_address(text, allow_literal=True)
            except InvalidInput as exc:
                out.fail(text, BAD_ADDRESS, f"{exc} (in alias {alias.source})")
                continue
            if not source.is_catch_all and self._key(target) == key:
                self._follow_self(source, inner, out)
            else:
                self._follow(target, inner, out)

    def _follow_self(
        self, source: Address, chain: tuple[tuple[_Key, str], ...], out: _Collector
    ) -> None:
        """An alias that lists itself: as in Postfix, the mailbox of that name gets a copy."""
        user = self._accounts.get_user(source, case_sensitive=self._case_sensitive)
        if user is not None:
            mailbox = _mailbox(user)
        elif self._key(source) == self._key(self._postmaster):
            mailbox = self._postmaster_mailbox()
        else:
            reason = f"{source.text}: the alias lists itself, but there is no such mailbox"
            out.fail(source.text, UNKNOWN_MAILBOX, reason + _via(chain[:-1]))
            return
        out.mailboxes.setdefault(self._key(source), mailbox)


def _mailbox(user: User) -> Mailbox:
    return Mailbox(user.address, user.domain, user.local_part, user.quota)


def _via(chain: tuple[tuple[_Key, str], ...]) -> str:
    return f" (via {' -> '.join(name for _, name in chain)})" if chain else ""


def reaches(router: LocalRouter, address: str, user: User) -> bool:
    """Whether mail for ``address`` ends up (also) in the mailbox of ``user``."""
    return any(m.address == user.address for m in router.expand(address).mailboxes)


def shadowing_alias(router: LocalRouter, store: AccountStore, user: User) -> Alias | None:
    """The alias of the user's own address, when it keeps mail out of the mailbox (an alias
    is looked up before a mailbox; one that lists the address itself delivers there too)."""
    found = store.get_alias(user.address)
    if found is None or reaches(router, user.address, user):
        return None
    return found
