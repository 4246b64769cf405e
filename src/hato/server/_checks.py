"""The per-stage checks of SMTP sessions: client limits, access rules, DNSBL, relay
control, unknown users and quota. Every refusal is one shape, :class:`policy.Decision`.

:class:`Checks` is one per server (the policy services and what they count);
:meth:`Checks.client` gives one :class:`ClientChecks` per connection, which holds what a
connection's checks remember (trusted or not, counted, DNSBL answers, refusals kept for
RCPT under ``policy.delay_reject``). The session calls a stage and answers the refusal,
if any; it never looks at routing, the policy services or a mailbox itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .. import mailauth, policy, routing, smtp
from ..accounts import AccountError, InvalidInput, parse_address
from ..config import Settings
from ..events import DnsblUnavailable, EventLog
from ..smtp import reply

__all__ = [
    "Checks",
    "ClientChecks",
    "MailboxUsage",
    "Rules",
    "UserLookup",
    "UserdbQuestion",
    "brief",
    "sender_syntax",
]

# The bytes a mailbox holds: (domain, local part, quota) -> bytes. From the delivery
# layer (the Maildir agent's maildirsize bookkeeping); the quota lets it doubt a figure.
MailboxUsage = Callable[[str, str, int], int]
# The A records of a name, for DNS blocklists.
DnsLookup = Callable[[str], Awaitable[list[str]]]


class UserLookup(Protocol):
    """Another user database (Dovecot's): raises AccountError when it cannot answer."""

    async def exists(self, user: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class UserdbQuestion:
    """The store does not know ``address`` of a local domain: the user database decides
    (:meth:`ClientChecks.ask_userdb`); ``unknown`` is the refusal if it does not know it."""

    address: str
    unknown: policy.Decision


class Checks:
    """The policy services of one server, built from its settings; SIGHUP's
    :meth:`reload` builds them again from new settings. Each connection keeps the
    :class:`Rules` it began with, so a session in progress is judged by one set of rules
    from its greeting to its end, and the next connection by the new ones."""

    def __init__(
        self,
        settings: Settings,
        *,
        router: routing.LocalRouter,
        usage: MailboxUsage,
        log: EventLog,
        dnsbl_lookup: DnsLookup | None = None,
        userdb: UserLookup | None = None,
    ) -> None:
        # Every generation of rules shares these collaborators; only the settings change.
        self._rules = functools.partial(
            Rules, router=router, usage=usage, log=log, dnsbl_lookup=dnsbl_lookup, userdb=userdb
        )
        self.current = self._rules(settings)

    def reload(self, settings: Settings) -> None:
        """New rules for new connections. The client limits keep what they counted unless
        their own settings changed (then they count afresh)."""
        old = self.current
        same_limits = _limit_settings(old.settings) == _limit_settings(settings)
        self.current = self._rules(settings, limits=old.limits if same_limits else None)

    def client(
        self, conn: smtp.ServerConnection, *, client_ip: str, server_ip: str, session: str
    ) -> ClientChecks:
        return ClientChecks(
            self.current, conn, client_ip=client_ip, server_ip=server_ip, session=session
        )


def _limit_settings(settings: Settings) -> tuple[object, ...]:
    p = settings.policy
    return (
        p.max_connections,
        p.connection_rate,
        p.message_rate,
        p.recipient_rate,
        settings.server.hostname,
    )


class Rules:
    """One generation of the policy services, built from one :class:`Settings`."""

    def __init__(
        self,
        settings: Settings,
        *,
        router: routing.LocalRouter,
        usage: MailboxUsage,
        log: EventLog,
        dnsbl_lookup: DnsLookup | None = None,
        userdb: UserLookup | None = None,
        limits: policy.ClientLimits | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        # accounts.userdb: who else knows the users (None: the store alone).
        self.userdb = userdb
        self.usage = usage
        self.log = log
        policy_settings, server = settings.policy, settings.server
        self.relay = policy.RelayPolicy(settings.relay.trusted_networks)
        self.access = policy.AccessPolicy(
            policy_settings, hostname=server.hostname, local_domains=server.local_domains
        )
        self.limits = limits or policy.ClientLimits(
            max_connections=policy_settings.max_connections,
            connection_rate=policy_settings.connection_rate,
            message_rate=policy_settings.message_rate,
            recipient_rate=policy_settings.recipient_rate,
            hostname=server.hostname,
        )
        # No lookup, no blocklist: its rules never match.
        self.dnsbl_lookup = dnsbl_lookup if self.access.zones else None
        # mailauth.check: SPF at MAIL FROM through the [dns] settings (None: not checked).
        self.mail_dns = (
            mailauth.MailDns(settings.dns.nameservers, settings.dns.timeout)
            if settings.mailauth.check
            else None
        )


class ClientChecks:
    """One connection's checks. The HELO, sender and AUTH state are read from ``conn``."""

    def __init__(
        self,
        checks: Rules,
        conn: smtp.ServerConnection,
        *,
        client_ip: str,
        server_ip: str,
        session: str,
    ) -> None:
        self._checks = checks
        self._conn = conn
        self.client_ip = client_ip
        self.server_ip = server_ip
        self.session = session
        self.trusted = checks.relay.is_trusted(client_ip)  # relay.trusted_networks
        self._counted = False  # ClientLimits.connect() let this connection in
        self._listed: dict[str, str] = {}  # DNS blocklist zone -> the answer that lists us
        # Refusals kept for RCPT time (policy.delay_reject): from connect, from HELO.
        self._delayed_connect: policy.Decision | None = None
        self._delayed_helo: policy.Decision | None = None
        # The transaction's first recipient and whether it is a test address (asked once).
        self._first: tuple[str, bool] | None = None
        # The SPF result of the last MAIL FROM, and the transaction it began (None until
        # its 250 made one): a result belongs to one transaction, gone at RSET or MAIL.
        self._spf: tuple[mailauth.SpfResult, smtp.Transaction | None] | None = None

    # -- connect -------------------------------------------------------------------------

    def admit(self) -> policy.Decision | None:
        """The per-IP connection limits, as the connection arrives (trusted: exempt)."""
        if self.trusted:
            return None
        refusal = self._checks.limits.connect(self.client_ip)
        self._counted = refusal is None
        return refusal

    @property
    def lookups(self) -> bool:
        """Whether :meth:`look_up` has blocklists to ask."""
        return self._checks.dnsbl_lookup is not None

    async def look_up(self) -> None:
        """The DNS blocklists, all at once, before the banner."""
        await asyncio.gather(*(self._look_up(zone) for zone in self._checks.access.zones))

    async def _look_up(self, zone: str) -> None:
        lookup, name = self._checks.dnsbl_lookup, policy.dnsbl_query(self.client_ip, zone)
        if lookup is None or name is None:
            return
        timeout = self._checks.settings.policy.dnsbl_timeout
        try:
            async with asyncio.timeout(timeout):
                answer = await lookup(name)
        except (routing.NoSuchDomain, routing.NoRecords):
            return  # RFC 5782 2.1: no A record is "not listed"
        except (TimeoutError, OSError, routing.DnsError) as error:
            # A list that fails us lists nobody, and the log says so.
            reason = str(error) or f"no answer within {timeout} s"
            self._checks.log.emit(
                DnsblUnavailable(
                    session=self.session, client_ip=self.client_ip, zone=zone, reason=reason
                )
            )
            return
        listed = policy.dnsbl_listed(answer)
        if listed is not None:
            self._listed[zone] = listed

    def connect(self) -> policy.Decision | None:
        """The connect rules (after the lookups); under delay_reject kept for RCPT."""
        decision = self._access("connect")
        if self._checks.settings.policy.delay_reject:
            self._delayed_connect, decision = decision, None
        return decision

    def close(self) -> None:
        if self._counted:
            self._counted = False
            self._checks.limits.disconnect(self.client_ip)

    # -- the commands ----------------------------------------------------------------------

    def helo(self, name: str) -> policy.Decision | None:
        decision = self._access("helo", helo=name, sender=None)
        self._delayed_helo = None
        if decision is not None and self._checks.settings.policy.delay_reject:
            self._delayed_helo, decision = decision, None
        return decision

    @property
    def wants_spf(self) -> bool:
        """Whether MAIL FROM gets an SPF check: mailauth.check is on and the client is
        neither trusted nor authenticated (its mail is ours to vouch for, not the world's)."""
        return (
            self._checks.mail_dns is not None and not self.trusted and not self._conn.authenticated
        )

    async def check_spf(self, sender: str) -> mailauth.SpfResult:
        """SPF for ``sender`` (the HELO identity for ``<>``), in a thread: its DNS blocks.
        The lookups go through a view of the resolver of the message's own."""
        dns = self._checks.mail_dns
        assert dns is not None  # only when wants_spf
        helo = self._conn.helo or ""
        return await asyncio.to_thread(
            mailauth.check_spf, dns.for_message(), self.client_ip, sender, helo
        )

    @property
    def spf(self) -> mailauth.SpfResult | None:
        """The SPF result of the current transaction's MAIL FROM; None when not checked."""
        if self._spf is None:
            return None
        result, bound = self._spf
        transaction = self._conn.transaction
        if transaction is None:  # judging MAIL before its reply; or after RSET: gone
            return result if bound is None else None
        if bound is None:  # the MAIL it was checked for was accepted: its transaction
            self._spf = (result, transaction)
            return result
        return result if bound is transaction else None

    def mail(self, sender: str, spf: mailauth.SpfResult | None = None) -> policy.Decision | None:
        """The message rate, then the mail rules (syntax: :func:`sender_syntax`), with the
        SPF result the session got from :meth:`check_spf` (kept for the transaction)."""
        self._spf = None if spf is None else (spf, None)
        if not self.trusted:
            decision = self._checks.limits.message(self.client_ip)
            if decision is not None:
                return decision
        return self._access("mail", sender=sender)

    def rcpt(self, recipient: str) -> policy.Decision | UserdbQuestion | None:
        """Refusals kept from connect and HELO, rate limits, access rules, the recipient;
        a question for the user database when the store does not know the recipient."""
        delayed = self._delayed_connect or self._delayed_helo
        if delayed is not None:
            return delayed
        if not self.trusted:
            decision = self._checks.limits.recipient(self.client_ip)
            if decision is not None:
                return decision
        return self._access("rcpt", recipients=(recipient,)) or self._recipient(recipient)

    def data(self) -> policy.Decision | None:
        """The data rules: at DATA, or at BDAT LAST (BDAT has no moment before the data)."""
        transaction = self._conn.transaction
        recipients = tuple(r for r, _ in transaction.recipients) if transaction else ()
        return self._access("data", recipients=recipients)

    # -- underneath --------------------------------------------------------------------------

    async def ask_userdb(self, question: UserdbQuestion) -> policy.Decision | None:
        """The user database's answer: None (a user), the 550, or 451 when it cannot say."""
        userdb = self._checks.userdb
        assert userdb is not None
        try:
            found = await userdb.exists(question.address)
        except AccountError as error:
            text = f"<{question.address}>: Temporary lookup failure, try again later"
            return policy.Decision(
                reply=reply(451, "4.3.0", text), reason=f"user database: {error}"
            )
        return None if found else question.unknown

    def _recipient(self, address: str) -> policy.Decision | UserdbQuestion | None:
        """Refuse at RCPT what would only bounce later: unknown users, relaying, full boxes."""
        checks = self._checks
        try:
            lookup = checks.router.lookup(address)
        except InvalidInput as error:
            # The grammar allows it (u@1.2, an xn-- label that is not Punycode), routing not.
            answer = reply(501, "5.1.3", f"Bad recipient address syntax ({brief(error)})")
            return policy.Decision(reply=answer, reason=str(error))
        decision = checks.relay.check(
            address,
            local=not isinstance(lookup, routing.NotLocal),
            client_ip=self.client_ip,
            authenticated=self._conn.authenticated,
        )
        if decision is not None:
            return decision
        transaction = self._conn.transaction
        if transaction is not None and transaction.recipients:
            # A test address's message is analysed and discarded whole: it takes no other
            # recipient, and no other message's recipient takes it (RFC 5321 4.5.3.1.10:
            # 452, the client sends the rest in another transaction).
            first = transaction.recipients[0][0]
            if self._first is None or self._first[0] != first:
                self._first = (first, self._is_probe(first))
            if isinstance(lookup, routing.Probe) != self._first[1]:
                text = f"<{address}>: a test address takes a message of its own, send it apart"
                return policy.Decision(
                    reply=reply(452, "4.5.3", text), reason="test address mixed with others"
                )
        match lookup:
            case routing.Unknown():
                text = f"<{address}>: Recipient address rejected: User unknown in local recipient"
                unknown = policy.Decision(
                    reply=reply(550, "5.1.1", text + " table"), reason="unknown user"
                )
                if checks.userdb is not None:
                    return UserdbQuestion(address, unknown)
                return unknown
            case routing.Mailbox(domain=domain, local_part=local, quota=quota) if quota:
                if checks.usage(domain, local, quota) >= quota:
                    if checks.settings.accounts.quota_exceeded == "permanent":
                        answer = reply(552, "5.2.2", f"<{address}>: Mailbox full")
                    else:
                        answer = reply(452, "4.2.2", f"<{address}>: Mailbox full, try later")
                    return policy.Decision(
                        reply=answer, reason=f"mailbox over quota of {quota} bytes"
                    )
        return None

    def _is_probe(self, address: str) -> bool:
        try:
            return isinstance(self._checks.router.lookup(address), routing.Probe)
        except InvalidInput:
            return False

    def _access(self, stage: str, **known: Any) -> policy.Decision | None:
        """The access rules of ``stage``; facts are gathered only when there are rules."""
        access = self._checks.access
        if not access.has_rules(stage):
            return None
        return access.check(stage, self._facts(**known))

    def _facts(self, **known: Any) -> policy.Facts:
        """What the access rules may look at, now; ``known`` adds what the caller has."""
        conn = self._conn
        transaction = conn.transaction
        facts = dataclasses.replace(
            policy.Facts(
                client_ip=self.client_ip,
                server_ip=self.server_ip,
                helo=conn.helo or "",
                sender=transaction.reverse_path if transaction is not None else None,
                authenticated=conn.authenticated,
                trusted=self.trusted,
                listed=self._listed,
                spf=None if (found := self.spf) is None else found.result,
            ),
            **known,
        )
        if facts.sender and "@" in facts.sender:
            domain = facts.sender.rpartition("@")[2]
            local = self._checks.router.is_local_domain(domain)
            facts = dataclasses.replace(facts, sender_local=local)
        return facts


def sender_syntax(sender: str) -> policy.Decision | None:
    """A sender the grammar allows but no report could be returned to (u@1.2): 501."""
    try:
        if sender:
            parse_address(sender, allow_literal=True)
    except InvalidInput as error:
        answer = reply(501, "5.1.7", f"Bad sender address syntax ({brief(error)})")
        return policy.Decision(reply=answer, reason=str(error))
    return None


def brief(error: Exception) -> str:
    # A reply line holds 512 octets (RFC 5321 4.5.3.1.5); the event log keeps all of it.
    text = str(error)
    return text if len(text) <= 200 else text[:197] + "..."
