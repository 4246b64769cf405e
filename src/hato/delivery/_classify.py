"""Why a delivery did not happen, in a few classes an operator can act on (pure functions).

The class is decided where the failure happens, from what the SMTP agent saw: the reply
(code, enhanced code, text) or the local failure (a connection that could not be made, a
TLS handshake, a DNS lookup). The rules are data, checked in order (first match wins),
because real servers word the same condition in many ways and say "policy" (X.7.1) for
most of them; the specific readings (a blocklist named, a rate, greylisting) come before
the general ones.

Each class has plain words and a next step (``EXPLANATIONS``), in the manner of the
``hato test`` catalog, so that ``hato queue``, the console and the metrics say the same.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "EXPLANATIONS",
    "Explanation",
    "LocalFailure",
    "Reason",
    "classify_local",
    "classify_reply",
]


class Reason(enum.StrEnum):
    """Why mail to a destination waits (or failed): the classes, as stored and shown."""

    BLOCKLISTED = "blocklisted"  # our address is on a DNS blocklist the receiver uses
    RATE_LIMITED = "rate-limited"  # too much, too fast: throttled by the receiver
    GREYLISTED = "greylisted"  # a first attempt deferred on purpose; a retry gets through
    TLS = "tls-failure"  # the TLS the policy asks for could not be had
    DNS = "dns-failure"  # the destination or its next hop does not resolve
    MAILBOX_FULL = "mailbox-full"  # the recipient's mailbox is over its quota
    CONNECTION = "connection"  # refused, timed out or lost before a reply
    POLICY = "policy"  # refused by a rule of the receiver's (X.7.x)
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Explanation:
    """A class in plain words: ``summary`` fits after "N deferred since HH:MM, ...: "."""

    summary: str
    meaning: str
    next_step: str


EXPLANATIONS: dict[Reason, Explanation] = {
    Reason.BLOCKLISTED: Explanation(
        "your address is listed on a blocklist",
        "The receiver looked up this server's IP address in a DNS blocklist (Spamhaus, "
        "Barracuda, SpamCop, or the receiver's own) and found it there.",
        "Look the IP up on the list the reply names (its URL usually says which and why), "
        "stop whatever sent spam from it, and ask for removal; until then mail there waits.",
    ),
    Reason.RATE_LIMITED: Explanation(
        "the receiver is throttling you: too many messages or connections",
        "The receiver takes only so much from one sender in a given time and asks you to "
        "slow down; the mail is retried, and gets through as the rate drops.",
        "Lower relay.per_destination (connections at once to one domain), spread large "
        "sends over time, and check the sender's reputation with the receiver "
        "(Google Postmaster Tools, Microsoft SNDS).",
    ),
    Reason.GREYLISTED: Explanation(
        "greylisted: the receiver defers a first attempt on purpose",
        "Greylisting refuses the first message of an unknown sender, address and "
        "recipient for some minutes; the retry is accepted.",
        "Nothing to do: the queue retries. If it lasts for hours, check that retries come "
        "from the same IP address and are not spaced beyond the greylist's window.",
    ),
    Reason.TLS: Explanation(
        "TLS failed: the encryption the policy requires could not be had",
        "The next hop did not offer STARTTLS, or the handshake failed (protocol, cipher, "
        "or a certificate that does not verify for the name), and the TLS policy for the "
        "domain forbids sending without it.",
        "Run hato test against the domain to see the certificate and the handshake; "
        "if the receiver cannot do better, relax relay.tls_policy for it (verify to encrypt).",
    ),
    Reason.DNS: Explanation(
        "DNS failure: the destination or its next hop does not resolve",
        "The name servers gave no usable answer (no such domain, no address for the "
        "configured next hop, SERVFAIL or a timeout).",
        "Check the name (dig MX <domain>, dig A <host>), the name servers in [dns] and "
        "any relay.transports entry naming a host.",
    ),
    Reason.MAILBOX_FULL: Explanation(
        "the recipient's mailbox is full",
        "The receiver took the address but has no room for it: the mailbox is over quota.",
        "Nothing on this side: the recipient must make room; the queue retries until the "
        "message expires.",
    ),
    Reason.CONNECTION: Explanation(
        "no connection: refused, timed out or dropped",
        "The next hop could not be reached on port 25, or dropped the connection before "
        "answering: a server that is down, a firewall, or outgoing port 25 blocked here.",
        "Try it by hand (hato test <domain>); check this network's outgoing port 25 and "
        "the receiver's status.",
    ),
    Reason.POLICY: Explanation(
        "refused by the receiver's policy",
        "A rule of the receiver refused the mail: the client, the sender, SPF/DKIM/DMARC, "
        "or the content; the reply text usually names it.",
        "Read the reply; check SPF, DKIM and DMARC for the sender domain (hato test --dns) "
        "and this server's reverse DNS and HELO name (hato test --self).",
    ),
    Reason.OTHER: Explanation(
        "the receiver deferred or refused it",
        "The reply fits none of the known classes.",
        "Read the last reply and the receiver's documentation; hato trace shows the session.",
    ),
}


@dataclass(frozen=True, slots=True)
class _Rule:
    reason: Reason
    words: re.Pattern[str] | None = None  # in the reply text, case-insensitive
    enhanced: tuple[str, ...] = ()  # any of these codes (a prefix ending in "." is a class)
    codes: tuple[int, ...] = ()  # any of these basic codes (with words, both must match)


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.IGNORECASE)


# In order: the first that matches decides. A rule with words and codes needs both.
_RULES = (
    _Rule(
        Reason.BLOCKLISTED,
        _words(
            r"spamhaus",
            r"barracuda",
            r"spamcop",
            r"blocked using",
            r"\bblock ?list",
            r"\bblack ?list",
            r"\bdnsbl\b",
            r"\brbl\b",
            r"listed (?:at|in|on|by)\b",
            r"\bis listed\b",
            r"\bS3140\b",  # Microsoft: part of their network is on our block list
        ),
    ),
    _Rule(Reason.RATE_LIMITED, enhanced=("4.7.28", "5.7.28")),  # Gmail's rate limit
    _Rule(
        Reason.RATE_LIMITED,
        _words(
            r"rate.?limit",
            r"throttl",
            r"too many (?:connections|messages|concurrent|sessions|recipients|mails)",
            r"\bS3150\b",
            r"\bS77719\b",
            r"server busy",
            r"slow down",
            r"exceeded (?:the|its|your) (?:rate|quota for sending)",
            r"\btoo fast\b",
        ),
    ),
    _Rule(Reason.GREYLISTED, _words(r"gr[ae]y.?list")),
    _Rule(Reason.MAILBOX_FULL, enhanced=("4.2.2", "5.2.2")),
    _Rule(
        Reason.MAILBOX_FULL,
        _words(
            r"mailbox (?:is )?full",
            r"over ?quota",
            r"quota exceeded",
            r"exceeded (?:the|its|his|her) (?:storage|quota)",
            r"mailbox (?:size|storage) (?:limit|exceeded)",
            r"insufficient (?:storage|space) for (?:the )?(?:mailbox|user|recipient)",
        ),
    ),
    _Rule(Reason.TLS, enhanced=("4.7.4", "4.7.5", "5.7.4", "5.7.5", "5.7.10", "4.7.10")),
    _Rule(Reason.TLS, _words(r"\btls\b", r"starttls", r"\bssl\b", r"encryption required")),
    # "Try again later" at 450/451 4.7.1 or 4.2.0 is how greylisting is said without the word.
    _Rule(
        Reason.GREYLISTED,
        _words(r"try (?:again )?later", r"come back later", r"please retry"),
        enhanced=("4.7.1", "4.2.0", "4.7.0"),
        codes=(450, 451),
    ),
    _Rule(Reason.POLICY, enhanced=("4.7.", "5.7.")),
    _Rule(Reason.MAILBOX_FULL, codes=(552,), enhanced=("", "5.2.", "4.2.", "5.0.0")),
)


def classify_reply(code: int, enhanced: str | None, text: str) -> Reason:
    """The class of a 4xx or 5xx reply from the next hop (its code, enhanced code and text)."""
    lowered = " ".join(text.split())
    found = (enhanced or "").strip()
    for rule in _RULES:
        if rule.words is not None and not rule.words.search(lowered):
            continue
        if rule.codes and code not in rule.codes:
            continue
        if rule.enhanced and not any(_code_matches(found, want) for want in rule.enhanced):
            continue
        return rule.reason
    return Reason.OTHER


def _code_matches(found: str, want: str) -> bool:
    if want.endswith("."):
        return found.startswith(want)
    return found == want


class LocalFailure(enum.Enum):
    """What went wrong on our side of the wire, before any reply said why."""

    CONNECT = "connect"  # refused, unreachable, timed out
    LOST = "lost"  # dropped or silent mid-session
    TLS = "tls"  # STARTTLS missing, refused or the handshake failed
    DNS = "dns"  # the route could not be resolved
    PROTOCOL = "protocol"  # the peer did not speak SMTP
    LOCAL = "local"  # our own disk or configuration


_LOCAL = {
    LocalFailure.CONNECT: Reason.CONNECTION,
    LocalFailure.LOST: Reason.CONNECTION,
    LocalFailure.TLS: Reason.TLS,
    LocalFailure.DNS: Reason.DNS,
    LocalFailure.PROTOCOL: Reason.OTHER,
    LocalFailure.LOCAL: Reason.OTHER,
}


def classify_local(failure: LocalFailure) -> Reason:
    """The class of a failure with no reply behind it."""
    return _LOCAL[failure]
