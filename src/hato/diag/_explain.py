"""Plain words for every failure class: what it means and what to check next.

The rules are written once, as data (``CATALOG``); ``reply_finding`` picks the class of a
reply from its code, enhanced code and the command it answers, as an administrator reading
the transcript would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..smtp import Reply
from ._report import Finding, Severity

__all__ = [
    "CATALOG",
    "EXTENSIONS",
    "explain_extension",
    "filled",
    "finding",
    "reply_finding",
]


@dataclass(frozen=True, slots=True)
class _Entry:
    severity: Severity
    title: str
    explanation: str
    next_steps: str


CATALOG: dict[str, _Entry] = {
    # -- DNS ------------------------------------------------------------------------------
    "nxdomain": _Entry(
        "fail",
        "{domain} does not exist in DNS (NXDOMAIN)",
        "The domain's name servers say there is no such name, so no server anywhere can "
        "deliver mail to it; senders bounce such mail at once (5.1.2).",
        "Check the spelling. If the domain is new, check that it is registered, that its "
        "NS records point to the right name servers, and that they serve the zone "
        "(dig NS {domain}; dig SOA {domain}).",
    ),
    "no-mx-no-address": _Entry(
        "fail",
        "{domain} has neither MX nor A/AAAA records",
        "The domain exists but names no mail server, and with no address of its own there "
        "is no implicit MX either: nobody can deliver mail to it (5.4.4).",
        "Publish an MX record naming the mail server (e.g. {domain}. MX 10 mail.{domain}.) "
        "and an A/AAAA record for that host.",
    ),
    "implicit-mx": _Entry(
        "warn",
        "{domain} has no MX records: mail goes to the domain's own address (implicit MX)",
        "RFC 5321 5.1 lets senders fall back to the A/AAAA records of the domain itself, and "
        "they do, but many administrators do not intend it, and some senders treat a "
        "domain without MX as not accepting mail.",
        "If this host is meant to receive mail, publish an MX record for it; if the domain "
        "sends no mail at all, publish a null MX (MX 0 .) instead.",
    ),
    "null-mx": _Entry(
        "fail",
        "{domain} publishes a null MX: it accepts no mail",
        "An MX record of '.' (RFC 7505) says the domain never receives mail; senders "
        "bounce at once (5.1.10) without trying any server.",
        "If the domain should receive mail, replace the null MX with real MX records.",
    ),
    "dns-temporary": _Entry(
        "fail",
        "DNS gave no usable answer for {domain}: {detail}",
        "The name servers failed (SERVFAIL, REFUSED) or did not answer in time. Senders "
        "keep the mail queued and retry (4.4.3), so mail is delayed, not lost, for now.",
        "Check the domain's name servers (dig +trace MX {domain}) and the resolver in use "
        "(the [dns] section of the Hato configuration, else /etc/resolv.conf).",
    ),
    "mx-host-no-address": _Entry(
        "warn",
        "MX host {mx} has no address: {detail}",
        "Senders skip an MX host they cannot resolve; if every host is like this, mail "
        "cannot be delivered.",
        "Add A/AAAA records for {mx}, or remove the MX record that names it. An MX must "
        "name a host with address records, never a CNAME or an IP address.",
    ),
    "mx-no-address": _Entry(
        "fail",
        "no MX host of {domain} has an address: {detail}",
        "The MX records name hosts that do not resolve, so no server can be reached.",
        "Add A/AAAA records for the MX hosts (dig A <host>), or fix the MX records.",
    ),
    # -- the connection ------------------------------------------------------------------
    "connection-refused": _Entry(
        "fail",
        "{host}:{port} refused the connection: nothing is listening there",
        "The host is reachable, but no program accepts connections on that port (or a "
        "firewall on the host rejects them actively).",
        "Check that the mail server runs and listens on that address and port "
        "(ss -ltnp | grep :{port} on the server), and the host's firewall rules.",
    ),
    "connect-timeout": _Entry(
        "fail",
        "no answer connecting to {host}:{port} within {timeout:g} s",
        "Nothing came back, not even a refusal: a firewall drops the packets, the host is "
        "down, or the network on this side blocks outgoing port {port} (many ISPs and "
        "cloud providers block port 25).",
        "Try from another network (telnet {host} {port}); check firewalls on both sides "
        "and whether your provider blocks outgoing port 25.",
    ),
    "unreachable": _Entry(
        "fail",
        "{host}:{port} cannot be reached: {detail}",
        "The network has no route to that address (or it is not configured here).",
        "Check the address, this machine's routes and network, and IPv4/IPv6 reachability.",
    ),
    "host-not-found": _Entry(
        "fail",
        "{host} has no address: {detail}",
        "The server's name does not resolve to an IPv4 or IPv6 address, so there is "
        "nothing to connect to.",
        "Check the spelling; check its A/AAAA records (dig A {host}; dig AAAA {host}).",
    ),
    "connection-reset": _Entry(
        "fail",
        "{host} closed or reset the connection {when}",
        "The server (or something between, such as a firewall or a load balancer) ended "
        "the connection without an SMTP reply. Servers do this to clients they refuse "
        "outright (blocklisted IPs, too many connections) or when they crash.",
        "Look at the server's log for this connection; check connection limits, "
        "tarpits and IP blocklists there.",
    ),
    "no-banner": _Entry(
        "fail",
        "{host} accepted the connection but sent no banner within {timeout:g} s",
        "An SMTP server greets at once with 220. Silence means a server that is stuck or "
        "overloaded, a deliberate greeting delay, or a port that is not SMTP at all "
        "(some other service, or a proxy waiting for something else).",
        "Connect by hand (telnet {host} {port}) and wait; check the server's load and "
        "its log; make sure the port is the SMTP one (25, 587 or 465 with TLS).",
    ),
    "garbage": _Entry(
        "fail",
        "{host} does not speak SMTP: {detail}",
        "What came back is not an SMTP reply: the port runs another protocol (HTTP, SSH, a "
        "TLS-only service such as port 465) or the server is broken.",
        "Check the port number; for port 465 (implicit TLS) this tool is not the right "
        "probe. Connect by hand to see what answers.",
    ),
    "reply-timeout": _Entry(
        "fail",
        "{host} did not answer {command} within {timeout:g} s",
        "The server stopped answering mid-conversation: overloaded, tarpitting, or a "
        "middlebox dropped the connection silently.",
        "Run again with a longer --timeout; look at the server's log and load.",
    ),
    # -- the greeting --------------------------------------------------------------------
    "banner-554": _Entry(
        "fail",
        "{host} refuses this client at the greeting: {reply}",
        "A 554 banner (RFC 5321 3.1) means the server will not talk to you at all, usually "
        "because of your IP address: a blocklist, a policy for dynamic IP ranges, or an "
        "access rule.",
        "Read the reply text (it often names the list); check your IP on the blocklists "
        "it names; test from the server that really sends your mail.",
    ),
    "banner-421": _Entry(
        "fail",
        "{host} is not taking connections now: {reply}",
        "421 at the greeting means the service is unavailable for now: overloaded, "
        "shutting down, or limiting connections from your address. Senders retry later.",
        "Try again later; if it persists, check the server's connection limits and log.",
    ),
    "banner-other": _Entry(
        "fail",
        "{host} greeted with an unexpected reply: {reply}",
        "A server should greet with 220; anything else means it will not take mail now.",
        "Read the reply text, then the server's log.",
    ),
    # -- EHLO / HELO ---------------------------------------------------------------------
    "ehlo-refused-helo-ok": _Entry(
        "warn",
        "{host} refused EHLO but accepted HELO: {reply}",
        "The server does not speak ESMTP (RFC 5321 extensions): no SIZE, no 8BITMIME, no "
        "STARTTLS, no AUTH, no DSN. It still takes plain mail.",
        "Upgrade or reconfigure the server to enable ESMTP; mail to it travels unencrypted.",
    ),
    "helo-refused": _Entry(
        "fail",
        "{host} refused both EHLO and HELO: {reply}",
        "The server will not start a session with the name we gave ({name}). Strict "
        "servers refuse a name that does not resolve or is not a fully qualified domain.",
        "Run with a resolvable hostname (-o server.hostname=NAME) and read the reply text.",
    ),
    # -- TLS -----------------------------------------------------------------------------
    "no-starttls": _Entry(
        "warn",
        "{host} does not offer STARTTLS: mail to it travels unencrypted",
        "Without STARTTLS anyone on the path can read the mail, and senders that require "
        "TLS will not deliver here.",
        "Configure a certificate and enable STARTTLS on the server.",
    ),
    "no-starttls-required": _Entry(
        "fail",
        "{host} does not offer STARTTLS, and --require-tls was given",
        "The server does not advertise STARTTLS in its EHLO reply, so the session cannot "
        "be encrypted.",
        "Configure a certificate and enable STARTTLS on the server. If it is advertised "
        "on other connections, something on the path may strip it (STARTTLS downgrade).",
    ),
    "starttls-refused": _Entry(
        "fail",
        "{host} offered STARTTLS but refused it: {reply}",
        "The server advertises TLS but cannot start it, often because its certificate or "
        "key cannot be read.",
        "Check the server's TLS configuration and log (certificate path, permissions).",
    ),
    "starttls-injection": _Entry(
        "warn",
        "{host} sent data after its 220 to STARTTLS; it was ignored",
        "Anything sent before the TLS handshake could come from anyone on the path; a "
        "server (or middlebox) that sends it is broken, and clients that read it are "
        "open to command injection.",
        "Check for a proxy or firewall rewriting SMTP between you and the server.",
    ),
    "tls-handshake": _Entry(
        "fail",
        "the TLS handshake with {host} failed: {detail}",
        "The server agreed to STARTTLS but the handshake did not complete: no protocol "
        "version or cipher in common, a broken certificate setup, or a middlebox in the "
        "way.",
        "Test with openssl s_client -starttls smtp -connect {host}:{port}; check the "
        "server's TLS versions and ciphers.",
    ),
    "cert-expired": _Entry(
        "warn",
        "{host}'s certificate expired on {date}",
        "Clients that verify certificates (MTA-STS, DANE, submission clients) refuse it; "
        "opportunistic senders still deliver, encrypted but unauthenticated.",
        "Renew the certificate and reload the server.",
    ),
    "cert-not-yet-valid": _Entry(
        "warn",
        "{host}'s certificate is not valid before {date}",
        "Either the certificate was issued for the future, or a clock is wrong (this "
        "machine's or the one that made it).",
        "Check both machines' clocks, then the certificate's dates.",
    ),
    "cert-self-signed": _Entry(
        "warn",
        "{host}'s certificate is self-signed ({subject})",
        "No certificate authority vouches for it, so clients that verify refuse it. That "
        "is common between MTAs (opportunistic TLS), but not for submission to users.",
        "Get a certificate from a public authority (e.g. ACME) if verifying clients must "
        "connect here.",
    ),
    "cert-name-mismatch": _Entry(
        "warn",
        "{host}'s certificate is not for {name} (it names: {names})",
        "A verifying client checks that the name it connected to is in the certificate; "
        "this one would refuse the session.",
        "Add the name to the certificate's subjectAltName, or point the MX at a name the "
        "certificate covers.",
    ),
    # -- AUTH ----------------------------------------------------------------------------
    "auth-not-offered": _Entry(
        "fail",
        "{host} does not offer AUTH{where}",
        "The EHLO reply lists no AUTH mechanism. Many servers offer it only after "
        "STARTTLS, and only on the submission port (587).",
        "Test the submission port (--server {host}:587) with TLS; check the server's "
        "authentication settings.",
    ),
    "auth-no-mechanism": _Entry(
        "fail",
        "{host} offers AUTH {mechanisms}, but neither PLAIN nor LOGIN",
        "This tool speaks PLAIN and LOGIN only.",
        "Enable PLAIN or LOGIN (inside TLS) on the server.",
    ),
    "auth-failed": _Entry(
        "fail",
        "{host} refused the credentials: {reply}",
        "535 means the user name or password is wrong, or the account may not log in "
        "(disabled, or too many failed attempts from this address).",
        "Check the user name (often the whole address) and the password; read the "
        "server's log for the reason.",
    ),
    "auth-needs-tls": _Entry(
        "fail",
        "{host} wants encryption before AUTH: {reply}",
        "The server refuses passwords over a plaintext connection.",
        "Run without --no-tls so the session uses STARTTLS first.",
    ),
    "auth-other": _Entry(
        "fail",
        "{host} refused AUTH: {reply}",
        "The server did not accept the authentication exchange.",
        "Read the reply text; check the mechanisms the server offers and its log.",
    ),
    # -- the transaction -----------------------------------------------------------------
    "auth-required": _Entry(
        "fail",
        "{host} requires authentication: {reply}",
        "530 means this port takes mail only from logged-in users: it is a submission "
        "service, not a public MX.",
        "Give --auth-user (and --auth-password, or answer the prompt), or test the MX on "
        "port 25 instead.",
    ),
    "unknown-user": _Entry(
        "fail",
        "{host} does not know the recipient {rcpt}: {reply}",
        "550 5.1.1 means the server handles the domain but has no such mailbox; senders "
        "bounce the mail at once.",
        "Check the spelling of the address; on the server, check the user or alias "
        "exists (for Hato: hato user list, hato alias list).",
    ),
    "relay-denied": _Entry(
        "fail",
        "{host} will not relay to {rcpt}: {reply}",
        "The server does not consider itself the destination for that domain and will "
        "not pass the mail on for you (5.7.1). That is right for a stranger's domain; for "
        "your own domain it means the server does not know the domain is local.",
        "If the domain should be local there, add it to the server's local domains "
        "(for Hato: hato domain add); if you meant to relay, authenticate (--auth-user) "
        "or send from a trusted network.",
    ),
    "policy-refused": _Entry(
        "fail",
        "{host} refused {command} by policy: {reply}",
        "5.7.x replies are security or policy refusals: the sender address, your IP, or "
        "an authentication check (SPF, DMARC) failed.",
        "Read the reply text; it usually names the rule. Check SPF/DKIM/DMARC for the "
        "sender domain and your IP's reputation.",
    ),
    "sender-refused": _Entry(
        "fail",
        "{host} refused the sender {sender}: {reply}",
        "The server will not take mail from this reverse-path: an unknown or unresolvable "
        "sender domain, a sender it does not allow from you, or a syntax it rejects.",
        "Try a --from address in a domain that resolves and that you may send for.",
    ),
    "mailbox-full": _Entry(
        "fail",
        "{host} refused for lack of space: {reply}",
        "552 means a size or storage limit: the mailbox is over quota, or the message is "
        "larger than the server takes.",
        "Ask the recipient to make room; compare the message size with the server's SIZE limit.",
    ),
    "greylisted": _Entry(
        "fail",
        "{host} deferred {command} temporarily: {reply}",
        "A 4xx reply is 'try again later'. To a first message from an unknown sender this "
        "is usually greylisting: a real server retries after some minutes and gets "
        "through. It can also be a full disk or a lookup that failed on their side.",
        "Run the test again in a few minutes; if it persists, read the reply text and "
        "ask the server's administrator.",
    ),
    "closing": _Entry(
        "fail",
        "{host} closed the session after {command}: {reply}",
        "421 means the server is shutting the connection: overloaded, too many errors, "
        "or a limit on connections or messages from your address.",
        "Try again later; check the server's log and limits.",
    ),
    "refused": _Entry(
        "fail",
        "{host} refused {command}: {reply}",
        "A permanent refusal (5xx): repeating the same thing will get the same answer.",
        "Read the reply text and the server's log.",
    ),
    "message-refused": _Entry(
        "fail",
        "{host} refused the message: {reply}",
        "The server read the message and refused it: content filters, size, or a policy "
        "on headers.",
        "Read the reply text; test without --send to check the envelope alone.",
    ),
    "dsn-not-offered": _Entry(
        "warn",
        "{host} does not offer DSN: no NOTIFY or ENVID was sent",
        "Without the DSN extension (RFC 3461) the server cannot be asked for a delivery "
        "report, so --wait can only see a failure it reports as a bounce.",
        "Enable DSN on the server if you want delivery reports.",
    ),
    "relay-open": _Entry(
        "fail",
        "{host} relayed {rcpt} ({form}) for {client}: an OPEN RELAY, unless it trusts that address",
        "From outside, a server that relays for anyone and one that relays only for its own "
        "networks look the same: both accept the recipient. If {client} is not one it "
        "trusts, it takes mail from anyone for any destination: spammers will find it, and "
        "its IP address will be blocklisted.",
        "Run the test from an address the server has no reason to trust. If it relays there "
        "too, allow relaying only for authenticated users and your own networks (for Hato: "
        "relay.trusted_networks), and refuse the '%', '!', quoted and source-route forms.",
    ),
    "relay-trusted": _Entry(
        "warn",
        "{host} relayed for this client because {client} is in its relay.trusted_networks"
        " ({network}): not an open relay",
        "This is this machine's own Hato ({source}), which relays for its trusted networks "
        "by design, so a test from here cannot show what the Internet sees. A client outside "
        "relay.trusted_networks that has not authenticated gets 554 5.7.1 Relay access "
        "denied for every one of these forms.",
        "To see that refusal, run the test from a host outside {network}; keep "
        "relay.trusted_networks to networks you control.",
    ),
    "relay-authenticated": _Entry(
        "warn",
        "{host} relayed for this client, which authenticated as {user}: not an open relay",
        "Relaying for authenticated users is what a submission service does; it says "
        "nothing about what a client that has not authenticated gets.",
        "Run --relay-test without --auth-user to test for an open relay.",
    ),
    # -- closing the loop ----------------------------------------------------------------
    "report-failed": _Entry(
        "fail",
        "the delivery report says the message failed: {detail}",
        "The server accepted the message but could not deliver it, and sent back a failure report.",
        "Read the diagnostic in the report (the remote server's reply) and fix what it names.",
    ),
    "report-delayed": _Entry(
        "warn",
        "the message is delayed: {detail}",
        "The server is still trying; only a delay warning arrived in time.",
        "Wait longer (--wait=SECONDS), or look at the queue of the server that sent it.",
    ),
    "no-report": _Entry(
        "fail",
        "no delivery report reached {mailbox} within {timeout:g} s",
        "The message was accepted, but no report came back. Either the server does not "
        "support DSN, it does not send success reports, the report is still on its way "
        "(queued, greylisted), or it went somewhere else (our own spam filter, a "
        "different mailbox).",
        "Check this Hato's queue (hato queue list) and log for the report; wait longer "
        "(--wait=SECONDS); ask the remote side whether it sends DSNs.",
    ),
    # -- hato test DOMAIN --dns: the domain's published records ---------------------------
    "spf-none": _Entry(
        "warn",
        "{domain} publishes no SPF record",
        "Without SPF (a TXT record starting v=spf1) receivers cannot tell which servers may "
        "send as {domain}; they give SPF 'none', trust its mail less, and DMARC can only "
        "pass through DKIM.",
        "Publish a TXT record at {domain} naming your sending servers, e.g. "
        '"v=spf1 mx -all" (or "v=spf1 ip4:ADDRESS -all").',
    ),
    "spf-multiple": _Entry(
        "fail",
        "{domain} publishes {count} SPF records: receivers treat that as an error (permerror)",
        "RFC 7208 4.5 allows one v=spf1 record per name; with more, every receiver's check "
        "ends in permerror, as if the domain had a broken record, and DMARC cannot pass "
        "through SPF.",
        "Merge them into one TXT record (one v=spf1, the mechanisms of both, one -all) and "
        "delete the others.",
    ),
    "spf-syntax": _Entry(
        "fail",
        "{domain}'s SPF record is not valid: {detail}",
        "A receiver that meets a term it cannot parse stops with permerror (RFC 7208 4.6), "
        "so the record authorizes nobody.",
        "Fix the record: mechanisms are all, include:, a, mx, ptr, ip4:, ip6:, exists:, "
        "each optionally after + - ~ ?; modifiers are redirect= and exp=.",
    ),
    "spf-too-many-lookups": _Entry(
        "fail",
        "{domain}'s SPF record needs {count} DNS lookups; receivers stop at 10 (permerror)",
        "RFC 7208 4.6.4 limits the mechanisms that cost a lookup (include, a, mx, ptr, "
        "exists and redirect, counted through every include) to 10. Past that, receivers "
        "give permerror: your mail fails SPF everywhere, and DMARC cannot pass through it.",
        "Cut the lookups: replace a and mx with ip4:/ip6: ranges, drop includes of services "
        "you no longer use, avoid ptr. The count: {detail}.",
    ),
    "spf-include-broken": _Entry(
        "fail",
        "{domain}'s SPF record includes {target}, which {detail}",
        "An include: whose domain has no SPF record is a permerror at receivers (RFC 7208 "
        "5.2), and so is a loop of includes: the whole record fails.",
        "Check the spelling of the include, or remove it if the service is gone.",
    ),
    "spf-plus-all": _Entry(
        "fail",
        "{domain}'s SPF record ends in {term}: anyone may send as you",
        "'+all' (or a bare 'all') authorizes every address on the Internet, so SPF passes "
        "for any forger, and a DMARC check aligned on SPF passes with it.",
        "End the record with -all (refuse others) or ~all (mark them), after the mechanisms "
        "that name your real servers.",
    ),
    "spf-no-all": _Entry(
        "warn",
        "{domain}'s SPF record does not end in -all or ~all ({detail})",
        "Without -all or ~all, mail from servers the record does not name gets 'neutral': "
        "receivers learn nothing about forgeries.",
        "End the record with -all (or ~all while you are still finding every server that "
        "sends for you).",
    ),
    "record-temporary": _Entry(
        "fail",
        "DNS gave no usable answer for {name}: {detail}",
        "The name servers failed or did not answer in time; receivers asking now get a "
        "temporary error (temperror) and may defer or distrust your mail.",
        "Check the domain's name servers (dig +trace TXT {name}) and the resolver used here "
        "(the [dns] section of the Hato configuration, else /etc/resolv.conf).",
    ),
    "dmarc-none": _Entry(
        "fail",
        "{domain} publishes no DMARC record (_dmarc.{domain})",
        "Without DMARC, receivers have no policy for mail that fails SPF and DKIM in your "
        "name, and you receive no reports about who sends as you. Large mailbox providers "
        "require DMARC of domains that send to them in volume.",
        "Publish a TXT record at _dmarc.{domain}, starting with "
        '"v=DMARC1; p=none; rua=mailto:dmarc@{domain}" to watch, then p=quarantine or '
        "p=reject.",
    ),
    "dmarc-multiple": _Entry(
        "fail",
        "_dmarc.{domain} holds {count} DMARC records: receivers ignore them all",
        "RFC 7489 6.6.3: with more than one v=DMARC1 record, receivers act as if there were none.",
        "Keep one record at _dmarc.{domain} and delete the others.",
    ),
    "dmarc-invalid": _Entry(
        "fail",
        "_dmarc.{domain} is not a valid DMARC record: {detail}",
        "Receivers discard a record they cannot parse, so the domain has no DMARC policy.",
        'Write it as "v=DMARC1; p=reject; rua=mailto:ADDRESS" (v= first, p= one of none, '
        "quarantine, reject).",
    ),
    "dmarc-monitoring": _Entry(
        "warn",
        "{domain}'s DMARC policy is p=none: monitoring only",
        "p=none asks receivers to report, not to act: mail that fails DMARC in your name is "
        "still delivered. It is the right first step, not the place to stay.",
        "Read the aggregate reports (rua=) until every real source passes, then move to "
        "p=quarantine and p=reject.",
    ),
    "dmarc-partial": _Entry(
        "warn",
        "{domain}'s DMARC policy applies to {pct}% of failing mail only (pct={pct})",
        "With pct below 100, receivers apply p={policy} to that share of failing mail and "
        "the next weaker policy to the rest.",
        "Raise pct to 100 (or remove it) once the reports show your mail passes.",
    ),
    "dmarc-no-reports": _Entry(
        "warn",
        "{domain}'s DMARC record asks for no reports (no rua=)",
        "Without rua= receivers send no aggregate reports, so you cannot see which servers "
        "send as you or whether your own mail passes.",
        "Add rua=mailto:ADDRESS to the record at _dmarc.{domain}.",
    ),
    "dkim-selectors-unknown": _Entry(
        "info",
        "DKIM: the selectors of {domain} are unknown here",
        "DKIM keys live at SELECTOR._domainkey.{domain}, and DNS cannot list them: only a "
        "signed message (its s= tag) or the domain's own signer tells the selector.",
        "Look at the DKIM-Signature of a message from {domain} and check "
        "dig TXT SELECTOR._domainkey.{domain}.",
    ),
    "dkim-no-keys": _Entry(
        "warn",
        "{domain} is hosted here but has no DKIM key: its mail goes out unsigned",
        "Without a DKIM signature, DMARC can pass only through SPF, which breaks as soon as "
        "a message is forwarded.",
        "Make a key (hato dkim keygen {domain}) and publish the record it prints "
        "(hato dkim dns {domain}).",
    ),
    "dkim-missing": _Entry(
        "fail",
        "DKIM key {selector} of {domain} is not published at {name}",
        "Receivers look up the key of each signature there; without it every signature made "
        "with this key fails (permerror), and DMARC cannot pass through DKIM.",
        "Publish the record hato dkim dns {domain} prints, then run this again (DNS caches "
        "may take the record's TTL to see it). {detail}",
    ),
    "dkim-mismatch": _Entry(
        "fail",
        "DKIM record {name} does not match Hato's key {selector} of {domain}",
        "The published public key is not the one Hato signs with, so every signature made "
        "with it fails verification at receivers.",
        "Replace the record with what hato dkim dns {domain} prints (an old key left in DNS "
        "after a keygen or rotate is the usual cause). {detail}",
    ),
    "dkim-temporary": _Entry(
        "fail",
        "DKIM record {name} could not be looked up: {detail}",
        "Receivers asking now get a temporary error (temperror) for signatures with this key.",
        "Check the domain's name servers (dig TXT {name}).",
    ),
    "dkim-store-unreadable": _Entry(
        "fail",
        "the DKIM keys of {domain} cannot be read: {detail}",
        "Hato cannot sign mail with keys it cannot read, so mail from {domain} goes out unsigned.",
        "Check DATA/dkim (hato dkim list) and its permissions.",
    ),
    "mta-sts-invalid": _Entry(
        "warn",
        "_mta-sts.{domain} is not a valid MTA-STS record: {detail}",
        "Senders that support MTA-STS (RFC 8461) ignore a record they cannot parse, so the "
        "policy that asks them to require TLS is not applied.",
        'Publish one TXT record "v=STSv1; id=20240101T000000" (id: 1 to 32 letters and '
        "digits, changed whenever the policy file changes), and serve the policy at "
        "https://mta-sts.{domain}/.well-known/mta-sts.txt.",
    ),
    "tls-rpt-invalid": _Entry(
        "warn",
        "_smtp._tls.{domain} is not a valid TLS-RPT record: {detail}",
        "Senders ignore a TLS reporting record (RFC 8460) they cannot parse, so you get no "
        "reports about failed TLS connections to your servers.",
        'Publish one TXT record "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}" (rua: mailto: or '
        "https: addresses, separated by commas).",
    ),
    # -- hato test --self: what a receiver will think of this server -----------------------
    "self-no-address": _Entry(
        "fail",
        "this machine's sending address cannot be found: {detail}",
        "The address is what receivers judge (reverse DNS, blocklists, SPF); without a route "
        "to the Internet this machine cannot send mail at all.",
        "Check the network and the default route (ip route), or name the address with --address.",
    ),
    "rdns-none": _Entry(
        "fail",
        "{address} has no reverse DNS (PTR record){detail}",
        "Many receivers refuse or distrust mail from an address without a PTR record: it "
        "looks like a home connection or a compromised machine.",
        "Ask whoever owns the address (your hosting provider, often a setting in its "
        "panel) to set its PTR record to {hostname}, and give {hostname} an A/AAAA record "
        "with {address}.",
    ),
    "rdns-unconfirmed": _Entry(
        "fail",
        "{address}'s reverse DNS name {names} does not resolve back to it",
        "Receivers check forward-confirmed reverse DNS: the PTR name must have an A/AAAA "
        "record with the same address. Without it the name counts for nothing, as if "
        "there were no PTR.",
        "Give {names} an A/AAAA record with {address}, or change the PTR to a name that "
        "has one (best: {hostname}).",
    ),
    "rdns-helo-mismatch": _Entry(
        "warn",
        "{address} is {name} in DNS, but Hato says HELO {hostname}",
        "Receivers compare the HELO name with the address's confirmed name; a mismatch is a "
        "common spam sign and costs reputation at strict receivers.",
        "Set server.hostname to {name}, or the PTR of {address} to {hostname} (with an "
        "A/AAAA record of {hostname} pointing back).",
    ),
    "dnsbl-listed": _Entry(
        "fail",
        "{address} is listed on {zone} ({answer}{detail})",
        "Receivers that use this blocklist refuse mail from this address (often at the "
        "banner, with 554), and others score it down.",
        "Look the address up on the list's website for the reason and the delisting "
        "procedure; find and stop what got it listed (an open relay, a compromised account, "
        "a misconfigured web form) first.",
    ),
    "dnsbl-temporary": _Entry(
        "warn",
        "blocklist {zone} did not answer for {address}: {detail}",
        "Whether the address is listed there is unknown. Some lists refuse queries from "
        "large public resolvers; their answer then means nothing.",
        "Run again; query the list through your own resolver (dig A {query}).",
    ),
    "spf-self-fail": _Entry(
        "fail",
        "SPF of {domain} gives {result} for {address}: receivers see mail from here as forged",
        "The domain's SPF record does not authorize this server's address, so mail from "
        "@{domain} sent from here fails SPF{more}.",
        "Add the address to the record at {domain} (ip4:{address} or ip6:..., or 'a:{hostname}' "
        "or 'mx' when they name this server). {detail}",
    ),
    "spf-self-weak": _Entry(
        "warn",
        "SPF of {domain} gives {result} for {address}",
        "The domain's SPF record does not say this server may send for it ({detail}); "
        "receivers treat such mail as unauthenticated by SPF.",
        "Add the address (ip4:/ip6:, a:{hostname} or mx) to the record at {domain}.",
    ),
    "self-cert-expired": _Entry(
        "fail",
        "this server's certificate ({path}) expired on {date}",
        "Senders that verify (MTA-STS, DANE) refuse to deliver, and submission clients "
        "refuse to connect.",
        "Renew it and reload Hato (kill -HUP); a self-signed one in DATA/tls is renewed at "
        "the next start.",
    ),
    "self-cert-expiring": _Entry(
        "warn",
        "this server's certificate ({path}) expires in {days} days, on {date}",
        "After that, verifying senders and submission clients refuse it.",
        "Renew it now and reload Hato (kill -HUP); check that automatic renewal runs.",
    ),
    "self-cert-missing": _Entry(
        "warn",
        "this server has no certificate yet ({path})",
        "Hato makes a self-signed one for its hostname at the first start when tls.certificate "
        "is not set; until then STARTTLS cannot be offered.",
        "Start hato serve once, or set tls.certificate to a certificate for the hostname.",
    ),
    "self-cert-unreadable": _Entry(
        "fail",
        "this server's certificate cannot be read: {detail}",
        "hato serve cannot offer TLS with a certificate it cannot load.",
        "Check the file (openssl x509 -in {path} -noout -text) and its permissions.",
    ),
}


def finding(
    code: str, *, host: str | None = None, severity: Severity | None = None, **values: object
) -> Finding:
    """The catalog entry ``code`` with its placeholders filled in."""
    return filled(code, values, host=host, severity=severity)


def filled(
    code: str,
    values: Mapping[str, object],
    *,
    host: str | None = None,
    severity: Severity | None = None,
) -> Finding:
    """:func:`finding` with the placeholders' values as one mapping."""
    entry = CATALOG[code]
    fill = _Fill({**values, "host": host or "the server"})
    return Finding(
        severity=severity or entry.severity,
        code=code,
        title=entry.title.format_map(fill),
        explanation=entry.explanation.format_map(fill),
        next_steps=entry.next_steps.format_map(fill),
        host=host,
    )


class _Fill(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "?"


def reply_finding(
    command: str, reply: Reply, *, host: str, rcpt: str = "", sender: str = ""
) -> Finding:
    """The failure class of a refusal (4xx/5xx) to ``command``."""
    text = str(reply)
    code = _reply_class(command, reply, text)
    return finding(code, host=host, reply=text, command=command, rcpt=rcpt, sender=sender)


def _reply_class(command: str, reply: Reply, text: str) -> str:
    enhanced = reply.enhanced or ""
    if reply.code == 421:
        return "closing"
    if reply.code == 530 or (enhanced == "5.7.0" and "auth" in text.lower()):
        return "auth-required"
    if reply.is_transient:
        return "greylisted"
    if reply.code == 552 or enhanced in ("5.2.2", "5.3.4"):
        return "mailbox-full"
    if command == "RCPT":
        if enhanced == "5.1.1" or (reply.code == 550 and _says(text, "unknown", "no such")):
            return "unknown-user"
        if enhanced == "5.7.1" or _says(text, "relay"):
            return "relay-denied"
    if enhanced.startswith("5.7."):
        return "policy-refused"
    if command == "MAIL":
        return "sender-refused"
    if command == "message":
        return "message-refused"
    return "refused"


def _says(text: str, *words: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


# What each EHLO keyword means, for the extension list.
EXTENSIONS: dict[str, str] = {
    "PIPELINING": "several commands per round trip (RFC 2920)",
    "SIZE": "largest message it takes, in octets (RFC 1870)",
    "8BITMIME": "takes 8-bit message bodies (RFC 6152)",
    "SMTPUTF8": "takes UTF-8 addresses and headers (RFC 6531)",
    "ENHANCEDSTATUSCODES": "replies carry x.y.z status codes (RFC 2034)",
    "DSN": "delivery status notifications on request: NOTIFY, RET, ENVID (RFC 3461)",
    "CHUNKING": "BDAT: the message in sized chunks instead of DATA (RFC 3030)",
    "BINARYMIME": "binary message bodies with BDAT (RFC 3030)",
    "STARTTLS": "the session can be encrypted (RFC 3207)",
    "AUTH": "login for submission; mechanisms listed (RFC 4954)",
    "HELP": "HELP answers with the command list",
    "VRFY": "VRFY can check an address",
    "EXPN": "EXPN can expand a mailing list",
    "ETRN": "remote queue start (RFC 1985)",
    "DELIVERBY": "deliver-by time limits (RFC 2852)",
    "REQUIRETLS": "mail can demand TLS on every hop (RFC 8689)",
    "MT-PRIORITY": "message priorities (RFC 6710)",
    "FUTURERELEASE": "hold mail until a given time (RFC 4865)",
    "LIMITS": "its limits on recipients and transactions (RFC 9422)",
    "XCLIENT": "Postfix proxy extension (client attributes)",
    "XFORWARD": "Postfix proxy extension (forwarded client attributes)",
}


def explain_extension(keyword: str, parameters: str) -> str:
    meaning = EXTENSIONS.get(keyword, "not a standard extension this tool knows")
    if keyword == "SIZE" and parameters.isdigit():
        size = int(parameters)
        meaning = f"largest message: {_size(size)}" if size else "no fixed size limit"
        meaning += " (RFC 1870)"
    return meaning


def _size(octets: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if octets >= scale:
            return f"{octets / scale:g} {unit}"
    return f"{octets} octets"
