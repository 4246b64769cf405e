"""Access rules: per stage, in order, the first rule whose conditions all hold decides.

A rule that matches with ``accept`` ends the stage's rules and returns nothing to refuse;
it never lifts the built-in checks that come after (relay control, unknown users), so an
access rule can close the server further but never open it as a relay. ``reject`` and
``defer`` return a :class:`Decision` with the rule's reply (or the stage's default), the
rule's name and, as the reason, the conditions that matched: what the event log needs to
answer "why was I refused?".

DNS blocklists are looked up by the caller (the server owns the resolver); this module
says which names to ask (:func:`dnsbl_query`) and what an answer means
(:func:`dnsbl_listed`), and takes the results as facts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..config import RULE_AUTH_CONDITIONS, RULE_FLAGS, AccessRule, PolicySettings, RuleAction
from ..smtp import AddressError, Reply, domain_a_label, is_ip_address, parse_reply, reply
from ._relay import Decision, client_address

__all__ = ["STAGES", "AccessPolicy", "Facts", "dnsbl_listed", "dnsbl_query", "helo_is_valid"]

# "end": once the message has been received and checked (SPF, DKIM, DMARC, ARC known).
STAGES = ("connect", "helo", "mail", "rcpt", "data", "end")

# Answers in 127.255.255.0/24 are a list's error codes (refused query, rate limited),
# not listings: Spamhaus returns them to queries from public resolvers.
_DNSBL_ERRORS = ipaddress.ip_network("127.255.255.0/24")
_DNSBL_LISTED = ipaddress.ip_network("127.0.0.0/8")


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What is known about the client and its transaction at the stage being checked."""

    client_ip: str
    server_ip: str = ""  # the address the client connected to (for helo_ours)
    helo: str = ""
    sender: str | None = None  # None before MAIL; "" is the null reverse-path
    recipients: tuple[str, ...] = ()  # at rcpt the one being checked; at data all of them
    authenticated: bool = False
    trusted: bool = False
    sender_local: bool = False
    listed: Mapping[str, str] = field(default_factory=dict)  # zone -> answer, when listed
    spf: str | None = None  # SpfResult.result, from MAIL FROM on (None: not checked)
    # The message checks, at the end stage (None before: a rule naming one never matches).
    dkim: str | None = None  # AuthResults.dkim_summary
    dmarc: str | None = None  # DmarcResult.result
    dmarc_policy: str | None = None  # DmarcResult.policy
    arc: str | None = None  # ArcResult.result


def dnsbl_query(ip: str, zone: str) -> str | None:
    """The name to look up in ``zone`` for ``ip`` (RFC 5782 2.1 and 2.4); None if not an IP."""
    address = client_address(ip)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        labels = str(address).split(".")
    else:
        labels = list(address.exploded.replace(":", ""))  # one label per nibble
    return ".".join(reversed(labels)) + "." + zone


def dnsbl_listed(addresses: list[str]) -> str | None:
    """The answer that lists the client, or None (RFC 5782 2.3: an A record in 127/8)."""
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address in _DNSBL_LISTED and address not in _DNSBL_ERRORS:
            return text
    return None


def helo_is_valid(name: str) -> bool:
    """A fully qualified domain name or an address literal (RFC 5321 4.1.1.1, 4.1.3)."""
    if name.startswith("[") and name.endswith("]"):
        literal = name[1:-1]
        if literal[:5].lower() == "ipv6:":
            literal = literal[5:]
            return is_ip_address(literal) and ":" in literal
        return is_ip_address(literal) and "." in literal
    try:
        a_label = domain_a_label(name)
    except AddressError:
        return False
    labels = a_label.split(".")
    # One label is no FQDN; an all-numeric last label is an address written without brackets.
    return len(labels) >= 2 and not labels[-1].isdigit()


class AccessPolicy:
    def __init__(
        self, settings: PolicySettings, *, hostname: str, local_domains: tuple[str, ...]
    ) -> None:
        self.rules: dict[str, tuple[AccessRule, ...]] = {
            stage: getattr(settings, stage) for stage in STAGES
        }
        self._own_names = frozenset((hostname.lower(), *local_domains))
        self._networks = {
            (stage, index): tuple(ipaddress.ip_network(n, strict=False) for n in rule.client)
            for stage in STAGES
            for index, rule in enumerate(self.rules[stage])
        }

    @property
    def zones(self) -> tuple[str, ...]:
        """Every DNS blocklist some rule names, in order of first use."""
        found = (zone for rules in self.rules.values() for rule in rules for zone in rule.dnsbl)
        return tuple(dict.fromkeys(found))

    def has_rules(self, stage: str) -> bool:
        """Whether ``stage`` has any rule (callers skip gathering facts when it has none)."""
        return bool(self.rules[stage])

    def check(self, stage: str, facts: Facts) -> Decision | None:
        """The refusal the first matching rule makes at ``stage``; None to go on."""
        for index, rule in enumerate(self.rules[stage]):
            matched = self._match(stage, index, rule, facts)
            if matched is None:
                continue
            if rule.action is RuleAction.ACCEPT:
                return None
            name = rule.name or f"{stage}[{index}]"
            answer = parse_reply(rule.reply) if rule.reply else _default_reply(rule, stage, facts)
            reason = f"policy rule {name}: " + (", ".join(matched) or "matches every client")
            return Decision(reply=answer, reason=reason, rule=name)
        return None

    # -- conditions --------------------------------------------------------------------

    def _match(self, stage: str, index: int, rule: AccessRule, facts: Facts) -> list[str] | None:
        """What matched, in words (for the reason); None when a condition does not hold."""
        why: list[str] = []
        if rule.client:
            network = _client_network(facts.client_ip, self._networks[(stage, index)])
            if network is None:
                return None
            why.append(f"client {facts.client_ip} in {network}")
        if rule.dnsbl:
            zone = next((z for z in rule.dnsbl if z in facts.listed), None)
            if zone is None:
                return None
            why.append(f"client {facts.client_ip} listed in {zone} ({facts.listed[zone]})")
        if rule.helo:
            pattern = _first(rule.helo, lambda p: _helo_matches(p, facts.helo))
            if pattern is None:
                return None
            why.append(f"HELO {facts.helo} matches {pattern}")
        if rule.sender:
            if facts.sender is None:
                return None
            pattern = _first(rule.sender, lambda p: _address_matches(p, facts.sender or ""))
            if pattern is None:
                return None
            why.append(f"sender <{facts.sender}> matches {pattern}")
        if rule.recipient:
            found = [
                (p, r) for r in facts.recipients for p in rule.recipient if _address_matches(p, r)
            ]
            if not found:
                return None
            why.append(f"recipient <{found[0][1]}> matches {found[0][0]}")
        for flag in RULE_FLAGS:
            wanted = getattr(rule, flag)
            if wanted is None:
                continue
            if self._flag(flag, facts) is not wanted:
                return None  # false, or nothing to judge yet (no HELO, no MAIL)
            why.append(f"{flag} = {'true' if wanted else 'false'}")
        for name in ("spf", *RULE_AUTH_CONDITIONS):
            wanted_results: tuple[str, ...] = getattr(rule, name)
            if not wanted_results:
                continue
            result: str | None = getattr(facts, name)
            if result not in wanted_results:
                return None
            why.append(f"{name} = {result}")
        return why

    def _flag(self, flag: str, facts: Facts) -> bool | None:
        """A boolean condition's value, worked out only for the rules that name it."""
        match flag:
            case "authenticated":
                return facts.authenticated
            case "trusted":
                return facts.trusted
            case "sender_local":
                return None if facts.sender is None else facts.sender_local
            case "helo_valid":
                return helo_is_valid(facts.helo) if facts.helo else None
            case _:  # helo_ours
                return self._helo_is_ours(facts) if facts.helo else None

    def _helo_is_ours(self, facts: Facts) -> bool:
        name = facts.helo.lower()
        if name.startswith("[") and name.endswith("]"):
            literal = name[1:-1].removeprefix("ipv6:")
            return bool(facts.server_ip) and _same_ip(literal, facts.server_ip)
        return name in self._own_names or (
            bool(facts.server_ip) and _same_ip(name, facts.server_ip)
        )


def _first(patterns: tuple[str, ...], test: Callable[[str], bool]) -> str | None:
    return next((p for p in patterns if test(p)), None)


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _client_network(
    ip: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> str | None:
    address = client_address(ip)
    if address is None:
        return None
    return next((str(n) for n in networks if address in n), None)


def _helo_matches(pattern: str, helo: str) -> bool:
    name = helo.lower().rstrip(".")
    if pattern.startswith("["):
        literal = name[1:-1].removeprefix("ipv6:") if name.startswith("[") else ""
        return bool(literal) and _same_ip(literal, pattern[1:-1])
    try:
        name = domain_a_label(name)
    except AddressError:
        return False
    if pattern.startswith("."):
        return name.endswith(pattern)
    return name == pattern


def _address_matches(pattern: str, address: str) -> bool:
    """Patterns as config normalized them: <>, local@, @domain, .domain, local@domain."""
    if pattern == "<>":
        return address == ""
    if not address:
        return False
    local, _, domain = address.rpartition("@")
    try:
        domain = domain_a_label(domain)
    except AddressError:
        domain = domain.lower()
    local = local.casefold()
    if pattern.endswith("@"):
        return local == pattern[:-1]
    if pattern.startswith("@"):
        return domain == pattern[1:]
    if pattern.startswith("."):
        return domain.endswith(pattern)
    return f"{local}@{domain}" == pattern


# -- default replies (Postfix's wording, so the texts are the ones administrators know) ----


def _default_reply(rule: AccessRule, stage: str, facts: Facts) -> Reply:
    defer = rule.action is RuleAction.DEFER
    if stage == "end":
        # After the data: the whole message is refused, not a command (Postfix's wording).
        return (
            reply(451, "4.7.1", "Try again later")
            if defer
            else reply(550, "5.7.1", "Message rejected")
        )
    if stage == "connect":
        # RFC 5321 4.3.2: a refused greeting is 554; 421 closes for now.
        code, status = (421, "4.7.1") if defer else (554, "5.7.1")
    elif rule.sender_local and not defer:
        code, status = 553, "5.7.1"
    elif rule.helo_valid is False and not defer:
        code, status = 504, "5.5.2"
    else:
        code, status = (450, "4.7.1") if defer else (554, "5.7.1")
    why = "try again later" if defer else "Access denied"
    listed = next((z for z in rule.dnsbl if z in facts.listed), None)
    client = f"Client host [{facts.client_ip}]"
    if listed is not None:
        text = f"Service unavailable; {client} blocked using {listed}"
    elif stage == "connect" or rule.client:
        text = f"{client} rejected: {why}"
    elif rule.sender_local:
        text = f"<{facts.sender}>: Sender address rejected: not logged in"
    elif rule.helo_valid is False:
        text = f"<{facts.helo}>: Helo command rejected: need fully-qualified hostname"
    elif rule.helo_ours:
        text = f"<{facts.helo}>: Helo command rejected: that is my own name"
    elif stage == "helo" or rule.helo:
        text = f"<{facts.helo}>: Helo command rejected: {why}"
    elif stage == "mail" or rule.sender:
        text = f"<{facts.sender}>: Sender address rejected: {why}"
    elif stage == "rcpt":
        recipient = facts.recipients[0] if facts.recipients else ""
        text = f"<{recipient}>: Recipient address rejected: {why}"
    else:
        text = f"Data command rejected: {why}"
    return reply(code, status, text)
