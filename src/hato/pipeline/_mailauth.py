"""Mail authentication in the pipeline: the checks of mail from outside, and DKIM signing.

- :class:`InboundChecks` (mail from clients neither trusted nor authenticated): SPF as the
  session found it at MAIL FROM, every DKIM signature, the ARC chain and DMARC, written as
  one ``Authentication-Results`` field; fields from outside that claim our authserv-id are
  dropped (they would be forged). Then the ``[policy] end`` rules, then DMARC's own
  request (``p=reject`` refused, ``p=quarantine`` into Junk; for such a domain, a result
  DNS left undecided is deferred, 451) unless a trusted ARC sealer vouches for the
  message. A message forwarded through an alias to a remote address gets our ARC set, so
  the next hop can trust what we found.
- :class:`DkimSigning` (submission, trusted clients, reports): one signature per active
  key of the From domain (or the sender's), made once here, before the durable commit, so
  the bytes stored and the bytes sent are the signed ones.

Both read the message in a thread: DNS and crypto never block the event loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
from collections.abc import Callable, Sequence
from typing import ClassVar

from .. import mailauth, policy
from ..config import MailAuthSettings
from ..events import AuthChecked, EventLog
from ..smtp import Reply
from ..spool import Envelope, Origin
from ._filter import ACCEPT, Message, Stage, Verdict

__all__ = ["DkimSigning", "InboundChecks", "header_domain", "is_trusted"]

# RFC 7489 6.6.4 leaves the reply to the receiver; 5.7.1 as the large receivers answer.
_DMARC_REJECT = Reply(550, "5.7.1", ("Message rejected: it fails its domain's DMARC policy",))
# A result DNS kept undecided, for a domain that asks for reject or quarantine: try later.
_DMARC_UNDECIDED = Reply(
    451, "4.7.1", ("Message deferred: its domain's DMARC result cannot be had now, try later",)
)


def is_trusted(
    envelope: Envelope, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """Whether the message came from a client in ``relay.trusted_networks``."""
    try:
        address = ipaddress.ip_address(envelope.client_ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


def header_domain(body: bytes | None) -> str | None:
    """The domain of the one address in a From-like field body, lowercased; None when
    there is none or several."""
    if body is None:
        return None
    pairs = email.utils.getaddresses([body.decode("utf-8", "replace")])
    addresses = [address for _, address in pairs if address]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].rpartition("@")[2].strip().rstrip(".").lower() or None


class InboundChecks:
    """SPF, DKIM, ARC and DMARC of mail from outside, and what the results mean."""

    name: ClassVar[str] = "mailauth"
    stages: ClassVar[Stage] = Stage.END

    def __init__(
        self,
        *,
        hostname: str,
        dns: mailauth.MailDns,
        settings: MailAuthSettings,
        trusted_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
        access: policy.AccessPolicy,
        forwarded_to: Callable[[Envelope], str | None] = lambda envelope: None,
        sealing_keys: Callable[[str], list[mailauth.SigningKey]] = lambda domain: [],
        log: EventLog | None = None,
    ) -> None:
        self.hostname = hostname
        self.dns = dns
        self.settings = settings
        self.trusted_networks = tuple(trusted_networks)
        self.access = access
        # The domain of the alias a message is forwarded through to a remote address (its
        # key seals the ARC set), or None when nothing is forwarded.
        self.forwarded_to = forwarded_to
        self.sealing_keys = sealing_keys
        self.log = log  # each message's results as an AuthChecked event (the metrics)

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        envelope = message.envelope
        if envelope.auth is not None or is_trusted(envelope, self.trusted_networks):
            return ACCEPT
        # The account store is read on the loop; DNS and crypto in a thread.
        forwarded = self.forwarded_to(envelope) if self.settings.srs else None
        return await asyncio.to_thread(self._check, message, forwarded)

    # -- in a thread -------------------------------------------------------------------

    def _check(self, message: Message, forwarded: str | None) -> Verdict:
        dns = self.dns.for_message()
        data = message.read_all()
        spf = message.annotations.get("spf")
        if not isinstance(spf, mailauth.SpfResult):  # the session did not check it at MAIL
            envelope = message.envelope
            spf = mailauth.check_spf(dns, envelope.client_ip, envelope.reverse_path, envelope.helo)
        dkim = mailauth.verify_dkim(dns, data)
        arc = mailauth.verify_arc(dns, data)
        dmarc = mailauth.check_dmarc(dns, message.header.get("From"), spf, dkim)
        results = mailauth.AuthResults(spf=spf, dkim=dkim, dmarc=dmarc, arc=arc)
        fields = mailauth.authentication_results(self.hostname, results)
        if forwarded is not None:
            fields = self._sealed(data, forwarded, results) + fields
        drop = tuple(
            index
            for index, (name, body) in enumerate(message.header.fields)
            if name.lower() == "authentication-results"
            and mailauth.claims_authserv_id(body, self.hostname)
        )
        summary = _summary(results)
        if self.log is not None:
            self.log.emit(_checked(message, results))
        decision = self.access.check("end", self._facts(message, results))
        if decision is not None:
            reason = f"{decision.reason} ({summary})"
            if decision.reply.code // 100 == 5:
                return Verdict.reject(decision.reply, reason)
            return Verdict.defer(decision.reply, reason)
        dmarc_asks = self._dmarc_asks(results)
        if dmarc_asks == "reject":
            return Verdict.reject(_DMARC_REJECT, _dmarc_reason(results, summary))
        if dmarc_asks == "defer":
            return Verdict.defer(_DMARC_UNDECIDED, _dmarc_reason(results, summary))
        if dmarc_asks == "quarantine":
            return Verdict.quarantine(_dmarc_reason(results, summary), prepend=fields, drop=drop)
        return Verdict.accept(prepend=fields, drop=drop)

    def _sealed(self, data: bytes, domain: str, results: mailauth.AuthResults) -> bytes:
        """Our ARC set for a message we forward, with the alias domain's (RSA) key."""
        for key in self.sealing_keys(domain):
            if key.algorithm != "rsa-sha256":
                continue  # RFC 8617 allows only rsa-sha256 seals
            try:
                return mailauth.arc_seal(data, key, authserv_id=self.hostname, results=results)
            except mailauth.SigningError:
                return b""  # a chain we cannot extend (unparsable, 50 sets): sent unsealed
        return b""

    def _dmarc_asks(self, results: mailauth.AuthResults) -> str | None:
        """ "reject" or "quarantine" when a failing DMARC result is to be honoured; "defer"
        when DNS left undecided a result that could have been either."""
        dmarc, arc = results.dmarc, results.arc
        if dmarc is None or dmarc.result not in ("fail", "temperror"):
            return None
        if not self.settings.dmarc_enforce:
            return None
        if dmarc.policy not in ("reject", "quarantine"):
            return None
        if arc is not None and arc.result == "pass" and arc.sealers:
            trusted = {d.lower() for d in self.settings.trusted_arc_sealers}
            if arc.sealers[-1].lower() in trusted:
                return None  # RFC 7489 7.2, local policy: a trusted forwarder vouches for it
        return "defer" if dmarc.result == "temperror" else dmarc.policy

    def _facts(self, message: Message, results: mailauth.AuthResults) -> policy.Facts:
        envelope = message.envelope
        return policy.Facts(
            client_ip=envelope.client_ip,
            helo=envelope.helo,
            sender=envelope.reverse_path,
            recipients=tuple(r.address for r in envelope.recipients),
            spf=results.spf.result if results.spf else "none",
            dkim=results.dkim_summary,
            dmarc=results.dmarc.result if results.dmarc else "none",
            dmarc_policy=results.dmarc.policy if results.dmarc else "none",
            arc=results.arc.result if results.arc else "none",
        )


def _dmarc_reason(results: mailauth.AuthResults, summary: str) -> str:
    dmarc = results.dmarc
    assert dmarc is not None
    return f"dmarc={dmarc.result} (p={dmarc.policy}) header.from={dmarc.from_domain}: {summary}"


def _checked(message: Message, results: mailauth.AuthResults) -> AuthChecked:
    return AuthChecked(
        session=message.envelope.session_id,
        queue_id=message.queue_id,
        spf=results.spf.result if results.spf else "none",
        dkim=results.dkim_summary,
        dmarc=results.dmarc.result if results.dmarc else "none",
        arc=results.arc.result if results.arc else "none",
    )


def _summary(results: mailauth.AuthResults) -> str:
    spf = results.spf.result if results.spf else "none"
    dmarc = results.dmarc.result if results.dmarc else "none"
    arc = results.arc.result if results.arc else "none"
    return f"spf={spf} dkim={results.dkim_summary} dmarc={dmarc} arc={arc}"


class DkimSigning:
    """A DKIM signature per active key of the message's own local domain."""

    name: ClassVar[str] = "dkim-sign"
    stages: ClassVar[Stage] = Stage.END

    def __init__(
        self,
        *,
        signing_keys: Callable[[str], list[mailauth.SigningKey]],
        is_local_domain: Callable[[str], bool],
        trusted_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
        expiry: float = 0.0,
    ) -> None:
        self.signing_keys = signing_keys
        self.is_local_domain = is_local_domain
        self.trusted_networks = tuple(trusted_networks)
        self.expiry = expiry

    def opening(self, queue_id: str, envelope: Envelope, origin: Origin) -> bytes:
        return b""

    def header(self, message: Message) -> bytes:
        return b""

    async def end(self, message: Message) -> Verdict:
        envelope = message.envelope
        if message.origin is Origin.SMTP and not (
            envelope.auth is not None or is_trusted(envelope, self.trusted_networks)
        ):
            return ACCEPT  # mail from outside is checked, not signed
        domain = self._domain(message)
        if domain is None:
            return ACCEPT
        keys = self.signing_keys(domain)
        if not keys:
            return ACCEPT
        signed = await asyncio.to_thread(self._sign, message, keys)
        return Verdict.accept(prepend=signed)

    def _domain(self, message: Message) -> str | None:
        """The From domain when it is ours (DMARC aligns then), else the sender's."""
        for domain in (
            header_domain(message.header.get("From")),
            message.envelope.reverse_path.rpartition("@")[2].lower() or None,
        ):
            if domain and self.is_local_domain(domain):
                return domain
        return None

    def _sign(self, message: Message, keys: list[mailauth.SigningKey]) -> bytes:
        try:
            return mailauth.sign_dkim(message.read_all(), keys, expiry=self.expiry)
        except mailauth.SigningError:
            return b""  # a header section dkimpy cannot parse: sent unsigned, as it came
