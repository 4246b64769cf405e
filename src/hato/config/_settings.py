"""The settings as frozen dataclasses, each field documented once.

A field's ``metadata`` holds its documentation (``doc``) and the rules the loader checks
(``ge``: at least, ``gt``: greater than, ``kind``: a parser for values that are more than a
TOML scalar). Fields whose value depends on the machine or on another field (hostname,
local_domains, data_dir, events_file) have no dataclass default; ``file_default`` holds what
the file means when the key is absent, and the loader computes the effective value from it.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import MISSING, dataclass, field
from pathlib import Path


def _meta(
    doc: str,
    *,
    file_default: object = MISSING,
    kind: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    secret: bool = False,
) -> dict[str, object]:
    # secret: never printed unless asked for (hato config show --show-secrets), not even
    # when the value is wrong. A path to a file holding a secret is no secret.
    rules = {"file_default": file_default, "kind": kind, "ge": ge, "gt": gt, "secret": secret}
    return {"doc": doc} | {
        name: rule
        for name, rule in rules.items()
        if rule is not None and rule is not MISSING and rule is not False
    }


class BareNewline(enum.StrEnum):
    """What to do with a CR or LF in DATA that is not part of a CRLF pair."""

    REJECT = "reject"
    NORMALIZE = "normalize"


class SyncMode(enum.StrEnum):
    """How the spool makes an accepted message durable before answering 250."""

    AUTO = "auto"
    SYNCFS = "syncfs"
    FSYNC = "fsync"


class LogLevel(enum.StrEnum):
    """The least severe operational message written to stderr."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One socket to listen on. ``host`` is an IP address without brackets."""

    host: str
    port: int

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"{self.host!r} is not an IP address") from None
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0-65535")

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """Parse ``"ADDR:PORT"`` or ``"[IPV6]:PORT"``; raise ValueError saying what is wrong."""
        if text.startswith("["):
            host, bracket, port = text[1:].partition("]:")
            if not bracket:
                raise ValueError(f'"{text}" needs the form "[IPV6]:PORT"')
            if ":" not in host:
                raise ValueError(f'"{text}": brackets are only for IPv6 addresses')
        else:
            host, colon, port = text.rpartition(":")
            if not colon:
                raise ValueError(f'"{text}" has no port; write "ADDR:PORT"')
            if ":" in host:
                raise ValueError(f'"{text}": an IPv6 address needs brackets, as "[::1]:2525"')
        if not host:
            raise ValueError(f'"{text}" has no address; use "0.0.0.0" or "[::]" for all')
        # int() would also take "+25", " 25" and non-ASCII digits.
        if not (port.isascii() and port.isdigit()):
            raise ValueError(f'"{text}": port {port!r} is not a number')
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            # Binding to a name would depend on the resolver at start-up.
            raise ValueError(f'"{text}": {host!r} is not an IP address') from None
        return cls(str(ip), int(port))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Who this server is, where it listens and where it keeps its data."""

    hostname: str = field(
        metadata=_meta(
            "Name this server gives itself in the greeting banner, the EHLO reply and Received"
            ' headers. "" means the machine\'s fully qualified domain name (socket.getfqdn()).'
            " Stored lowercased; a non-ASCII name is stored as its A-label (xn--...).",
            file_default="",
            kind="hostname",
        )
    )
    listen: tuple[ListenAddress, ...] = field(
        default=(ListenAddress("127.0.0.1", 2525),),
        metadata=_meta(
            'Sockets to accept SMTP on, as "ADDR:PORT" where ADDR is an IP address; an IPv6'
            ' address goes in brackets, as "[::1]:2525". Port 0 asks the kernel for a free port.',
            kind="listen",
        ),
    )
    implicit_tls_listen: tuple[ListenAddress, ...] = field(
        default=(ListenAddress("127.0.0.1", 2465),),
        metadata=_meta(
            "Sockets that speak TLS from the first byte (RFC 8314 implicit TLS, port 465 style),"
            ' as "ADDR:PORT" like listen; [] listens for none. They use the [tls] certificate'
            " and never offer STARTTLS.",
            kind="listen_optional",
        ),
    )
    submission_listen: tuple[ListenAddress, ...] = field(
        default=(ListenAddress("127.0.0.1", 2587),),
        metadata=_meta(
            'Sockets for message submission (RFC 6409, port 587 style), as "ADDR:PORT" like'
            " listen; [] listens for none. They offer STARTTLS, require AUTH before MAIL, accept"
            " only the authenticated user's own address as sender and add Date: and"
            " Message-ID: headers when a message has none.",
            kind="listen_optional",
        ),
    )
    data_dir: Path = field(
        metadata=_meta(
            "Directory for the spool, mailboxes and logs. A relative path is taken from the"
            " working directory at start-up, so a service should be given an absolute one.",
            file_default="./hato-data",
            kind="data_dir",
        )
    )
    local_domains: tuple[str, ...] = field(
        metadata=_meta(
            "Domains whose mail is delivered here instead of relayed."
            ' [] means ["localhost", hostname]. Stored lowercased, non-ASCII names as A-labels.',
            file_default=[],
            kind="domains",
        )
    )
    reverse_dns: bool = field(
        default=True,
        metadata=_meta(
            "Look up the client's PTR name for the Received header. Off saves a DNS query per"
            " connection; the header then records only the IP address."
        ),
    )
    shutdown_grace: float = field(
        default=30.0,
        metadata=_meta(
            "Seconds that sessions in the middle of DATA get to finish after SIGTERM before"
            " they are closed with 421. 0 closes them at once.",
            ge=0,
        ),
    )
    proxy_protocol_from: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "Proxies (CIDR networks) that open each connection with a PROXY protocol header"
            " (HAProxy's send-proxy or send-proxy-v2, versions 1 and 2), as"
            ' ["127.0.0.1/32"]. A connection from these must send one before the greeting, and'
            " the client it names is used everywhere (log, policy, limits, SPF, Received);"
            " a missing or malformed header, or a header from any other address, is refused."
            " [] reads no header from anyone.",
            kind="networks",
        ),
    )
    user: str = field(
        default="",
        metadata=_meta(
            "When started as root: the user to run as once every socket is bound (ports"
            ' below 1024 included). The data directory is made this user\'s. "" stays the'
            " user Hato was started as.",
        ),
    )
    group: str = field(
        default="",
        metadata=_meta(
            'The group to run as with server.user. "" is the user\'s own group.',
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """Limits the SMTP service enforces on every session."""

    max_message_size: int = field(
        default=67108864,
        metadata=_meta(
            "Largest message accepted, in bytes, advertised with the EHLO SIZE keyword. A"
            " larger message is read to its end and then refused, so its tail is never taken"
            " for commands.",
            gt=0,
        ),
    )
    max_command_line: int = field(
        default=512,
        metadata=_meta(
            "Longest command line accepted, in octets including CRLF. RFC 5321 4.5.3.1.4 makes"
            " 512 the least a server may accept.",
            ge=512,
        ),
    )
    max_text_line: int = field(
        default=1000,
        metadata=_meta(
            "Longest line of message text accepted, in octets including CRLF. RFC 5322 2.1.1"
            " allows 998 characters plus CRLF, so a server may not accept less than 1000.",
            ge=1000,
        ),
    )
    max_recipients: int = field(
        default=100,
        metadata=_meta(
            "Most recipients of one message; a client offered more gets 452 and sends them in"
            " another transaction. RFC 5321 4.5.3.1.8 asks for at least 100.",
            ge=1,
        ),
    )
    max_errors: int = field(
        default=20,
        metadata=_meta(
            'Error replies one session may collect before it is closed with "421 4.7.0", so a'
            " confused or hostile client cannot hold a connection forever. A 452 for too"
            " many recipients is no error, unless a client sends 1000 more RCPTs than"
            " max_recipients without a message accepted in between.",
            ge=1,
        ),
    )
    junk_command_limit: int = field(
        default=100,
        metadata=_meta(
            "NOOP, VRFY and RSET commands one session may send before each one more counts"
            " as an error toward max_errors (Postfix's smtpd_junk_command_limit), so a client"
            " cannot hold a connection with commands that move no mail. An accepted message"
            " starts the count again.",
            ge=0,
        ),
    )
    idle_timeout: float = field(
        default=300.0,
        metadata=_meta(
            "Seconds a client may take to send a complete command or the next piece of DATA"
            ' before it is closed with "421 4.4.2".',
            gt=0,
        ),
    )
    bare_newline: BareNewline = field(
        default=BareNewline.REJECT,
        metadata=_meta(
            '"reject": a CR or LF in message data (DATA or BDAT) outside a CRLF pair refuses'
            ' the message with 550 5.5.2, which closes the door to SMTP smuggling. "normalize":'
            " such a line ending becomes CRLF inside the message; the end of DATA is still only"
            " CRLF.CRLF. Either way Hato sends every line on with CRLF."
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolSettings:
    """The durable store of accepted messages."""

    sync: SyncMode = field(
        default=SyncMode.AUTO,
        metadata=_meta(
            'How accepted messages are made durable before the 250 reply. "fsync": each file'
            ' and its directory. "syncfs": one syncfs() of the spool file system per group'
            ' commit (Linux). "auto": syncfs where the system has it, fsync elsewhere.'
        ),
    )
    max_batch: int = field(
        default=256,
        metadata=_meta(
            "Most messages one group commit covers; concurrent sessions share one sync"
            " up to this many, and the rest wait for the next.",
            ge=1,
        ),
    )


class QuotaAction(enum.StrEnum):
    """How a recipient whose mailbox is over quota is answered."""

    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountsSettings:
    """How recipient addresses map onto the mailboxes and aliases kept in the store."""

    recipient_delimiter: str = field(
        default="+",
        metadata=_meta(
            'Separator of plus addressing: "user+tag@domain" is delivered to "user@domain".'
            ' "" turns plus addressing off.',
            kind="delimiter",
        ),
    )
    case_sensitive_local_parts: bool = field(
        default=False,
        metadata=_meta(
            "Match local parts case-sensitively. Off by default, as users expect"
            " User@example.com and user@example.com to be one mailbox; domains are always"
            " compared case-insensitively."
        ),
    )
    postmaster: str = field(
        default="",
        metadata=_meta(
            "Mailbox that receives mail for postmaster@ of every local domain (RFC 5321"
            ' 4.5.1). "" means postmaster@<hostname>, a mailbox that always exists.',
            kind="mailbox",
        ),
    )
    delivery: LmtpTarget | None = field(
        default=None,
        metadata=_meta(
            'How mail for local mailboxes is stored: "maildir" (Hato writes DATA/mailboxes)'
            ' or an LMTP server that delivers it, "lmtp:unix:/run/dovecot/lmtp" or'
            ' "lmtp:host:port" (port 24 when none is named), such as Dovecot\'s.',
            file_default="maildir",
            kind="delivery",
        ),
    )
    userdb: DovecotSocket | None = field(
        default=None,
        metadata=_meta(
            "Who says at RCPT whether a user exists: \"\" (Hato's account store) or Dovecot's"
            ' user database through its auth-userdb socket, "dovecot:/run/dovecot/auth-userdb"'
            ' or "dovecot:inet:host:port". Dovecot\'s users have no Maildir in Hato, so this'
            " needs accounts.delivery to name Dovecot's LMTP server. Aliases and the domains"
            " stay in Hato's store.",
            kind="dovecot_socket",
        ),
    )
    userdb_timeout: float = field(
        default=5.0,
        metadata=_meta(
            "Seconds to wait for Dovecot's user database at RCPT; then 451 4.3.0.", gt=0
        ),
    )
    quota_exceeded: QuotaAction = field(
        default=QuotaAction.TEMPORARY,
        metadata=_meta(
            'Answer to a recipient whose mailbox is over its quota: "temporary" gives'
            ' 452 4.2.2 (the sender retries), "permanent" gives 552 5.2.2.'
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSettings:
    """When queued messages are delivered, retried and given up on."""

    retry_initial: float = field(
        default=300.0,
        metadata=_meta(
            "Seconds before the first retry of a delivery that failed temporarily; each"
            " further retry waits twice as long, with up to 10% random jitter.",
            gt=0,
        ),
    )
    retry_max: float = field(
        default=3600.0,
        metadata=_meta("Longest wait between two retries, in seconds.", gt=0),
    )
    lifetime: float = field(
        default=432000.0,
        metadata=_meta(
            "Seconds a message may stay queued (5 days by default); recipients still deferred"
            " after that fail.",
            gt=0,
        ),
    )
    max_received: int = field(
        default=50,
        metadata=_meta(
            "A message with more Received: headers than this is a mail loop and fails with 5.4.6.",
            ge=1,
        ),
    )
    deliver_in_data: bool = field(
        default=True,
        metadata=_meta(
            "Deliver mail for local mailboxes while the client waits, before answering 250"
            " (the mailbox copies durable, as the queue would make them), so it never enters"
            " the queue. Messages that owe a report, go elsewhere too or cannot be delivered"
            " at once are queued as usual."
        ),
    )
    concurrency: int = field(
        default=8,
        metadata=_meta(
            "Most deliveries to other servers in progress at once. Local deliveries go in"
            " batches through one worker, since each batch shares one sync of the disk.",
            ge=1,
        ),
    )


class TlsPolicy(enum.StrEnum):
    """What Hato insists on when it connects to another server (RFC 3207 STARTTLS)."""

    NONE = "none"  # never STARTTLS
    MAY = "may"  # STARTTLS when offered, any certificate; plaintext otherwise
    ENCRYPT = "encrypt"  # STARTTLS required, any certificate
    VERIFY = "verify"  # STARTTLS required, certificate verified for the host name


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host to connect to, as the loader parsed it from ``host:port`` text.

    ``host`` is a lowercase A-label domain or an IP address in its canonical form (no
    brackets); ``is_ip`` says which, so routing never parses it again. ``str()`` gives the
    canonical text the loader reads back to an equal value: ``host:port``, ``[v6]:port``.
    """

    host: str
    port: int
    is_ip: bool = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is outside 1-65535")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            is_ip = False
        else:
            is_ip = True
        object.__setattr__(self, "is_ip", is_ip)  # derived, so it cannot disagree with host

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


LMTP_PORT = 24  # RFC 2033 5: LMTP must not use port 25; 24 is its registered port


@dataclass(frozen=True, slots=True)
class LmtpTarget:
    """An LMTP server (RFC 2033): a unix socket ``path``, or ``address`` over TCP.

    ``str()`` is the text the loader reads back: ``lmtp:unix:/path`` or ``lmtp:host:port``.
    """

    path: str | None = None
    address: HostPort | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.address is None):
            raise ValueError("an LMTP target is a unix socket path or a host:port, one of them")

    def __str__(self) -> str:
        return f"lmtp:unix:{self.path}" if self.path is not None else f"lmtp:{self.address}"


@dataclass(frozen=True, slots=True)
class DovecotSocket:
    """A socket of Dovecot's auth service: a unix socket ``path``, or ``address`` over TCP.

    ``str()`` is the text the loader reads back: ``dovecot:/path`` or
    ``dovecot:inet:host:port``.
    """

    path: str | None = None
    address: HostPort | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.address is None):
            raise ValueError("a Dovecot socket is a unix socket path or a host:port, one of them")

    def __str__(self) -> str:
        return f"dovecot:{self.path}" if self.path is not None else f"dovecot:inet:{self.address}"


@dataclass(frozen=True, slots=True)
class Transport:
    """One transport table entry: mail for exactly ``domain`` goes to ``next_hop``, or to
    the LMTP server ``lmtp``, or is delivered here when both are None (the file's
    ``local``)."""

    domain: str
    next_hop: HostPort | None
    lmtp: LmtpTarget | None = None

    def __str__(self) -> str:
        return f"{self.domain} {self.lmtp or self.next_hop or 'local'}"


@dataclass(frozen=True, slots=True)
class TlsPolicyEntry:
    """One TLS policy table entry: what Hato insists on towards ``domain``'s hosts."""

    domain: str
    policy: TlsPolicy

    def __str__(self) -> str:
        return f"{self.domain} {self.policy}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RelaySettings:
    """Who may relay through Hato, and how mail for other domains leaves it."""

    trusted_networks: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1/128"),
        metadata=_meta(
            "Clients in these networks (CIDR) may send mail to any domain; everyone else may"
            ' only send to local domains and gets "554 5.7.1 Relay access denied" otherwise.',
            kind="networks",
        ),
    )
    smarthost: HostPort | None = field(
        default=None,
        metadata=_meta(
            'Send all mail for other domains to this "host:port" (or "host", port 25) instead'
            ' of looking up MX records; "" looks up MX records.',
            kind="nexthop",
        ),
    )
    smarthost_tls: TlsPolicy = field(
        default=TlsPolicy.MAY,
        metadata=_meta(
            'TLS towards the smarthost: "none", "may" (opportunistic), "encrypt" (required) or'
            ' "verify" (required, with a verified certificate).'
        ),
    )
    smarthost_username: str = field(
        default="",
        metadata=_meta('User name for AUTH at the smarthost; "" sends no AUTH.'),
    )
    smarthost_password: str = field(
        default="",
        metadata=_meta("Password for AUTH at the smarthost (sent only over TLS).", secret=True),
    )
    transports: tuple[Transport, ...] = field(
        default=(),
        metadata=_meta(
            'Per-domain next hops, as "domain next-hop" where next-hop is "host:port",'
            ' "[ip]:port", an LMTP server ("lmtp:unix:/path" or "lmtp:host:port") or "local"'
            " (deliver here), like Postfix's transport table.",
            kind="transports",
        ),
    )
    tls_policy: tuple[TlsPolicyEntry, ...] = field(
        default=(),
        metadata=_meta(
            'Per-domain TLS policy, as "domain policy" with policy none, may, encrypt or'
            " verify; domains not listed use may.",
            kind="tls_policies",
        ),
    )
    port: int = field(
        default=25,
        metadata=_meta(
            "TCP port of the mail exchangers found by MX lookup (25 on the internet).",
            ge=1,
            kind="port",
        ),
    )
    connect_timeout: float = field(
        default=30.0,
        metadata=_meta("Seconds to wait for a TCP connection to a next hop.", gt=0),
    )
    per_destination: int = field(
        default=4,
        metadata=_meta("Most connections to one destination domain at once.", ge=1),
    )
    session_reuse: float = field(
        default=5.0,
        metadata=_meta(
            "Seconds a session to a next hop stays open for the next message to the same host"
            " (several transactions per session, as RFC 5321 3.3 allows); 0 closes each"
            " session after its message.",
            ge=0,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsSettings:
    """Where Hato looks up MX, A and AAAA records."""

    nameservers: tuple[HostPort, ...] = field(
        default=(),
        metadata=_meta(
            'Name servers as "ip" or "ip:port" ("[ipv6]:port"); [] uses the system resolver'
            " (/etc/resolv.conf).",
            kind="nameservers",
        ),
    )
    timeout: float = field(
        default=5.0,
        metadata=_meta(
            "Seconds a DNS lookup may take before it counts as a transient failure.", gt=0
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DsnSettings:
    """Delivery status notifications (RFC 3461/3464): when they are sent and what they hold."""

    delay_warning: float = field(
        default=14400.0,
        metadata=_meta(
            'Seconds a recipient may stay deferred before its sender gets one "delayed"'
            " report (when NOTIFY includes DELAY); 0 never sends one.",
            ge=0,
        ),
    )
    delay_warning_without_notify: bool = field(
        default=False,
        metadata=_meta(
            "Also warn about delays when the sender gave no NOTIFY (RFC 3461 leaves it to the"
            " server; off, as in Postfix)."
        ),
    )
    full_message_limit: int = field(
        default=1048576,
        metadata=_meta(
            "Without RET=FULL or RET=HDRS, a report returns the whole message up to this many"
            " bytes, only its header when it is larger.",
            ge=0,
        ),
    )
    outside_full_limit: int = field(
        default=4096,
        metadata=_meta(
            "A failure report for a message from an outside client (not authenticated, not"
            " in relay.trusted_networks), whose sender may be forged, returns only the"
            " header section, unless the message came with RET=FULL and is at most this many"
            " bytes (0: never the whole message). This keeps backscatter small.",
            ge=0,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """The certificate the SMTP service presents, and where it offers TLS."""

    certificate: Path | None = field(
        default=None,
        metadata=_meta(
            "PEM file with the server certificate, followed by its intermediate certificates."
            ' "" means a self-signed certificate for the hostname, made on first start in'
            " data_dir/tls/ and renewed when it expires or the hostname changes. A relative"
            " path is taken from the working directory at start-up. SIGHUP reloads it.",
            kind="certificate_file",
        ),
    )
    key: Path | None = field(
        default=None,
        metadata=_meta(
            'PEM file with the private key of certificate; "" means the key is in the'
            " certificate file itself. Set it only together with certificate.",
            kind="key_file",
        ),
    )
    starttls: bool = field(
        default=True,
        metadata=_meta(
            "Offer STARTTLS (RFC 3207) on the plain listeners. Clients may still send"
            " without it: on port 25 encryption is the client's choice."
        ),
    )


class SenderLoginMatch(enum.StrEnum):
    """Which MAIL FROM addresses an authenticated user may use."""

    OWNED = "owned"
    DELIVERED = "delivered"
    DOMAIN = "domain"
    ANY = "any"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    """SMTP AUTH (RFC 4954) against the account store's passwords."""

    backend: DovecotSocket | None = field(
        default=None,
        metadata=_meta(
            "Whose passwords AUTH checks: \"store\" (Hato's account store) or Dovecot's auth"
            ' service through its client socket, "dovecot:/run/dovecot/auth-client" or'
            ' "dovecot:inet:host:port"; then the mechanisms offered are those of Dovecot\'s'
            " that are also in auth.mechanisms.",
            file_default="store",
            kind="auth_backend",
        ),
    )
    backend_timeout: float = field(
        default=30.0,
        metadata=_meta(
            "Seconds to wait for Dovecot's auth service; then 454 4.7.0. Dovecot itself delays"
            " answers to a client that failed before (up to 15 s), so keep this above that.",
            gt=0,
        ),
    )
    mechanisms: tuple[str, ...] = field(
        default=("PLAIN", "LOGIN"),
        metadata=_meta(
            "SASL mechanisms offered, in this order: PLAIN and/or LOGIN. [] offers no AUTH at"
            " all (and the submission listeners then accept no mail).",
            kind="mechanisms",
        ),
    )
    allow_plaintext: bool = field(
        default=False,
        metadata=_meta(
            "Offer AUTH without TLS too. Off (the default), AUTH is offered only after STARTTLS"
            " or on an implicit TLS listener, so passwords never cross the network in clear."
        ),
    )
    max_failures: int = field(
        default=5,
        metadata=_meta(
            "Failed AUTH attempts one client IP may make within failure_window; one more and"
            " its session is closed with 421 4.7.0 and the IP is refused at connect for"
            " ban_time.",
            ge=1,
        ),
    )
    failure_window: float = field(
        default=300.0,
        metadata=_meta("Seconds over which failed AUTH attempts of one IP are counted.", gt=0),
    )
    ban_time: float = field(
        default=600.0,
        metadata=_meta(
            "Seconds an IP that failed AUTH too often is refused with 421 4.7.0 at connect.",
            ge=0,
        ),
    )
    sender_login_match: SenderLoginMatch = field(
        default=SenderLoginMatch.OWNED,
        metadata=_meta(
            "Which envelope senders an authenticated user may use, on every listener:"
            ' "owned" (the login address, with or without a +tag, or an alias by its own name'
            ' that leads to the login\'s mailbox; never a catch-all), "delivered" (any local'
            " address whose mail reaches the login's mailbox, a catch-all's unassigned"
            ' addresses included), "domain" (any address in the login\'s domain) or "any" (no'
            " check). Others get 553 5.7.1."
        ),
    )
    failure_delay: float = field(
        default=1.0,
        metadata=_meta(
            "Seconds to wait before answering a failed AUTH (535), which slows password"
            " guessing without holding up other sessions.",
            ge=0,
        ),
    )


class RuleAction(enum.StrEnum):
    """What an access rule does with what it matches."""

    ACCEPT = "accept"  # stop looking at this stage's rules; the built-in checks still apply
    REJECT = "reject"  # a 5xx reply (554 5.7.1 unless the rule says otherwise)
    DEFER = "defer"  # a 4xx reply: try again later (450 4.7.1; 421 4.7.1 at connect)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRule:
    """One access rule: every condition it names must hold (an empty rule matches all).

    Patterns: an address ``user@example.com``; a domain ``example.com`` or
    ``@example.com``; subdomains ``.example.com``; a local part anywhere ``user@``; the null
    sender ``<>``. HELO patterns are names (``.example.com`` for subdomains) or address
    literals. The boolean conditions match only when set: ``trusted = false`` matches
    clients outside relay.trusted_networks.
    """

    action: RuleAction
    name: str = ""  # how the event log names it; "" means "STAGE[INDEX]"
    reply: str = ""  # "CODE [X.Y.Z] text"; "" means the default for the action and stage
    client: tuple[str, ...] = ()  # IP addresses or networks (CIDR)
    helo: tuple[str, ...] = ()
    sender: tuple[str, ...] = ()
    recipient: tuple[str, ...] = ()  # at data: any recipient of the transaction
    dnsbl: tuple[str, ...] = ()  # DNS blocklist zones; matches when the client is listed
    authenticated: bool | None = None
    trusted: bool | None = None
    sender_local: bool | None = None  # the sender's domain is one Hato hosts
    helo_valid: bool | None = None  # a FQDN or an address literal
    helo_ours: bool | None = None  # our hostname, a local domain or our own address
    # The SPF result of the reverse-path (or HELO for <>), known from MAIL FROM on: at
    # mail, rcpt, data and end. The results that match (any of them): "pass", "fail", ...
    spf: tuple[str, ...] = ()
    # Known once the message has been read and checked: at the "end" stage only. Each is
    # the results that match (any of them).
    dkim: tuple[str, ...] = ()  # "pass", "fail", "none": any signature passed, none did
    dmarc: tuple[str, ...] = ()  # "pass", "fail", "none", "temperror", "permerror"
    dmarc_policy: tuple[str, ...] = ()  # what a failing From domain asks: "reject", ...
    arc: tuple[str, ...] = ()  # the chain's validation: "pass", "fail", "none"


# AccessRule's boolean conditions, in the order a refusal's reason names them.
RULE_FLAGS = ("authenticated", "trusted", "sender_local", "helo_valid", "helo_ours")
# AccessRule's spf condition: RFC 7208 2.6's words; known from MAIL FROM on.
RULE_SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
RULE_SPF_STAGES = ("mail", "rcpt", "data", "end")
# AccessRule's message-check conditions (the "end" stage only) and the words each takes.
RULE_AUTH_CONDITIONS: dict[str, tuple[str, ...]] = {
    "dkim": ("pass", "fail", "none"),
    "dmarc": ("pass", "fail", "none", "temperror", "permerror"),
    "dmarc_policy": ("reject", "quarantine", "none"),
    "arc": ("pass", "fail", "none"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySettings:
    """Who may connect and send: ordered access rules per stage, and per-IP rate limits."""

    connect: tuple[AccessRule, ...] = field(
        default=(),
        metadata=_meta(
            "Rules checked when a client connects, first match wins. Each is a table with an"
            ' action ("accept", "reject", "defer"), optional name and reply, and conditions:'
            " client (IPs/CIDRs), helo, sender, recipient (patterns), dnsbl (zones),"
            " authenticated, trusted, sender_local, helo_valid, helo_ours (booleans)."
            ' Example: [{ action = "reject", client = ["192.0.2.0/24"] }].',
            kind="rules_connect",
        ),
    )
    helo: tuple[AccessRule, ...] = field(
        default=(),
        metadata=_meta("Rules checked at HELO/EHLO.", kind="rules_helo"),
    )
    mail: tuple[AccessRule, ...] = field(
        default=(),
        metadata=_meta("Rules checked at MAIL FROM.", kind="rules_mail"),
    )
    rcpt: tuple[AccessRule, ...] = field(
        default=(),
        metadata=_meta(
            "Rules checked at each RCPT TO, before the relay and mailbox checks (which an"
            ' "accept" never skips).',
            kind="rules_rcpt",
        ),
    )
    data: tuple[AccessRule, ...] = field(
        default=(),
        metadata=_meta(
            "Rules checked at DATA; with BDAT, once the LAST chunk has arrived.",
            kind="rules_data",
        ),
    )
    end: tuple[AccessRule, ...] = field(
        default=(),
        metadata=_meta(
            "Rules checked after the message has been received and checked (SPF, DKIM,"
            " DMARC, ARC known). Only here may a rule name the conditions dkim"
            ' ("pass", "fail", "none"), dmarc ("pass", "fail", "none", "temperror",'
            ' "permerror"), dmarc_policy ("reject", "quarantine", "none": what a failing'
            ' From domain asks) and arc ("pass", "fail", "none"), each a result or an array'
            ' of them. Example: [{ action = "reject", dmarc = "fail", dmarc_policy ='
            ' "reject" }].',
            kind="rules_end",
        ),
    )
    delay_reject: bool = field(
        default=False,
        metadata=_meta(
            "Answer connect and HELO refusals at RCPT TO instead (as Postfix's"
            " smtpd_delay_reject), so the event log shows the sender and recipient too."
        ),
    )
    max_connections: int = field(
        default=50,
        metadata=_meta(
            "Most simultaneous connections from one IP address; 0 means no limit. Clients in"
            " relay.trusted_networks are never limited.",
            ge=0,
        ),
    )
    connection_rate: int = field(
        default=0,
        metadata=_meta(
            "Most connections one IP address may open per minute (421 4.7.0); 0: no limit.",
            ge=0,
        ),
    )
    message_rate: int = field(
        default=0,
        metadata=_meta(
            "Most messages (MAIL FROM) one IP address may send per minute (450 4.7.1);"
            " 0: no limit.",
            ge=0,
        ),
    )
    recipient_rate: int = field(
        default=0,
        metadata=_meta(
            "Most recipients (RCPT TO) one IP address may give per minute (450 4.7.1);"
            " 0: no limit.",
            ge=0,
        ),
    )
    dnsbl_timeout: float = field(
        default=5.0,
        metadata=_meta(
            "Seconds to wait for DNS blocklist answers; a list that does not answer in time"
            " counts as not listing the client.",
            gt=0,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """Where operational messages and events go."""

    level: LogLevel = field(
        default=LogLevel.INFO,
        metadata=_meta(
            'Least severe messages written to stderr: "debug", "info", "warning" or "error".'
        ),
    )
    events_file: Path | None = field(
        metadata=_meta(
            'JSON-lines file that receives the event stream, relative to data_dir; "" disables'
            " it. Loaded settings hold it as an absolute path, or None when disabled.",
            file_default="log/events.jsonl",
            kind="events_file",
        )
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceSettings:
    """The flight recorder behind ``hato trace``: every conversation, kept for a while."""

    enabled: bool = field(
        default=True,
        metadata=_meta(
            "Record each session's and each delivery attempt's conversation (never message"
            " data; AUTH data masked) and each message's events in DATA/trace.sqlite3."
        ),
    )
    retention: float = field(
        default=604800.0,
        metadata=_meta(
            "Seconds a trace record is kept (7 days by default); the server prunes older"
            " records as it runs.",
            gt=0,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    """Prometheus metrics: counters, gauges and histograms of what the server does."""

    enabled: bool = field(
        default=True,
        metadata=_meta(
            "Count connections, messages, refusals, TLS, AUTH and authentication results,"
            " and time the 250 and the delivery attempts, for /metrics."
        ),
    )
    listen: tuple[ListenAddress, ...] = field(
        default=(),
        metadata=_meta(
            'Sockets of a listener of its own serving /metrics over HTTP, as "ADDR:PORT" like'
            ' server.listen (e.g. ["127.0.0.1:9025"]); [] serves none. Anyone who can reach it'
            " can read the metrics: keep it on loopback or a private network.",
            kind="listen_optional",
        ),
    )


class FilterFailure(enum.StrEnum):
    TEMPFAIL = "tempfail"
    ACCEPT = "accept"


@dataclass(frozen=True, slots=True)
class MilterSocket:
    """Where a milter listens, as Postfix writes it: ``inet:HOST:PORT`` (an IPv6 address in
    brackets) or ``unix:/path``. ``str()`` gives that text back."""

    kind: str  # "inet" | "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"


# Where a milter applies: the SMTP listeners, and "local" (messages Hato writes itself).
MILTER_LISTENERS = ("smtp", "submission", "implicit_tls", "local")
# The stages a milter's macros are named for, in the order they come.
MILTER_MACRO_STAGES = ("connect", "helo", "mail", "rcpt", "data", "eoh", "eom")


@dataclass(frozen=True, slots=True, kw_only=True)
class MilterSettings:
    """One milter (a ``[[pipeline.milters]]`` table): Sendmail's mail filter protocol, as
    Postfix's ``smtpd_milters``/``non_smtpd_milters`` speak it."""

    name: str  # how the event log and hato trace name it
    socket: MilterSocket
    listeners: tuple[str, ...] = ("smtp", "submission", "implicit_tls")
    default_action: FilterFailure = FilterFailure.TEMPFAIL
    connect_timeout: float = 30.0
    command_timeout: float = 30.0
    message_timeout: float = 300.0
    # stage -> macro names; a stage left out has the defaults (hato.milter.DEFAULT_MACROS).
    macros: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSettings:
    """The message filters every message passes between its final dot and its commit."""

    timeout: float = field(
        default=30.0,
        metadata=_meta(
            "Seconds one filter may take over one message before it counts as failed.", gt=0
        ),
    )
    on_error: FilterFailure = field(
        default=FilterFailure.TEMPFAIL,
        metadata=_meta(
            'What a filter that fails or times out means: "tempfail" answers 451 4.7.1 and'
            ' the sender tries again later; "accept" lets the message through unchecked,'
            " with a warning event."
        ),
    )
    milters: tuple[MilterSettings, ...] = field(
        default=(),
        metadata=_meta(
            "Milters (Sendmail's mail filter protocol: rspamd, OpenDKIM, ...), in order, each"
            " a [[pipeline.milters]] table: name (for the logs), socket"
            ' ("inet:127.0.0.1:11332", "inet:[::1]:8891", "unix:/run/milter.sock"),'
            ' listeners (which ways in it sees: any of "smtp", "submission", "implicit_tls",'
            ' and "local" for reports Hato writes; default the three SMTP ones),'
            ' default_action ("tempfail" or "accept": what an unreachable, slow or broken'
            " milter means), connect_timeout (30 s), command_timeout (30 s), message_timeout"
            " (300 s, for the message's header, body and end) and macros (a table: stage"
            " connect, helo, mail, rcpt, data, eoh or eom -> the macro names sent there;"
            " stages left out get Postfix's defaults). Each is connected to once per SMTP"
            " session, at connect.",
            kind="milters",
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimSettings:
    """DKIM signing of mail from local domains (keys: hato dkim, under DATA/dkim/)."""

    sign: bool = field(
        default=True,
        metadata=_meta(
            "Sign mail whose sender is in a local domain with a key, when it arrives by"
            " submission (AUTH), from relay.trusted_networks, or is a report Hato writes."
        ),
    )
    expiry: float = field(
        default=0.0,
        metadata=_meta("Seconds a signature stays valid (its x= tag); 0 writes no expiry.", ge=0),
    )
    retire_after: float = field(
        default=604800.0,
        metadata=_meta(
            "Seconds a key replaced by hato dkim rotate stays published and known before it"
            " is retired (a week by default, so mail signed with it still verifies).",
            ge=0,
        ),
    )
    sign_contradicted: bool = field(
        default=False,
        metadata=_meta(
            "Sign even with a key whose published DNS record does not match it (by default"
            " such a key is skipped, with a warning: its signatures would fail anyway)."
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MailAuthSettings:
    """Checks of mail from outside: SPF, DKIM, DMARC and ARC, and forwarding (ARC, SRS)."""

    check: bool = field(
        default=True,
        metadata=_meta(
            "Check SPF, DKIM, DMARC and ARC on mail from clients that are neither trusted nor"
            " authenticated, and prepend an Authentication-Results field."
        ),
    )
    dmarc_enforce: bool = field(
        default=True,
        metadata=_meta(
            "Honour a failing DMARC result: p=reject is refused with 550 5.7.1, p=quarantine"
            " goes to the recipient's Junk folder; false only records the result."
        ),
    )
    trusted_arc_sealers: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "Domains whose passing ARC seal (a mailing list, a forwarder) is trusted to vouch"
            " for a message whose DMARC fails, so it is not refused or quarantined.",
            kind="domains",
        ),
    )
    srs: bool = field(
        default=True,
        metadata=_meta(
            "Rewrite the envelope sender of mail forwarded through an alias to a remote"
            " address (SRS), so SPF passes at the next hop, and seal it with ARC."
        ),
    )
    srs_domain: str = field(
        default="",
        metadata=_meta(
            'The domain SRS addresses are in; "" uses server.hostname. It must be a local'
            " domain of this server, so bounces to SRS addresses come back here."
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    """The HTTP service: the JSON API (and the console) in the same process as SMTP."""

    listen: tuple[ListenAddress, ...] = field(
        default=(ListenAddress("127.0.0.1", 8025),),
        metadata=_meta(
            'Sockets for the HTTP service, as "ADDR:PORT" like server.listen; [] turns it'
            " off. Listening beyond loopback without tls logs a warning at start.",
            kind="listen_optional",
        ),
    )
    tls: bool = field(
        default=False,
        metadata=_meta(
            "Serve HTTPS with the SMTP service's certificate ([tls]); session cookies are"
            " then marked Secure."
        ),
    )
    admin_password_file: Path | None = field(
        default=None,
        metadata=_meta(
            "File whose first line is the password of the admin user created at the first"
            ' start. "" makes a random one, printed once on stderr (hato web passwd changes it).',
            kind="optional_path",
        ),
    )
    session_lifetime: float = field(
        default=43200.0,
        metadata=_meta("Seconds a console login lasts without being used.", gt=0),
    )
    event_buffer: int = field(
        default=1000,
        metadata=_meta(
            "Events held for each /api/v1/events client that reads slower than they come;"
            " past that the oldest are dropped for that client, never held up for SMTP. As"
            " many recent events are kept for clients that reconnect with Last-Event-ID.",
            ge=1,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything read from the configuration file; a change needs a restart."""

    server: ServerSettings = field(
        metadata=_meta("Who this server is, where it listens and keeps its data.")
    )
    smtp: SmtpSettings = field(metadata=_meta("Limits the SMTP service enforces on every session."))
    spool: SpoolSettings = field(metadata=_meta("The durable store of accepted messages."))
    log: LogSettings = field(metadata=_meta("Where operational messages and events go."))
    accounts: AccountsSettings = field(
        default_factory=AccountsSettings,
        metadata=_meta("How recipient addresses map onto mailboxes and aliases."),
    )
    queue: QueueSettings = field(
        default_factory=QueueSettings,
        metadata=_meta("When queued messages are delivered, retried and given up on."),
    )
    relay: RelaySettings = field(
        default_factory=RelaySettings,
        metadata=_meta("Who may relay, and how mail for other domains leaves."),
    )
    dns: DnsSettings = field(
        default_factory=DnsSettings,
        metadata=_meta("Where MX, A and AAAA records are looked up."),
    )
    dsn: DsnSettings = field(
        default_factory=DsnSettings,
        metadata=_meta("Delivery status notifications: when and what."),
    )
    tls: TlsSettings = field(
        default_factory=TlsSettings,
        metadata=_meta("The certificate of the SMTP service and where TLS is offered."),
    )
    auth: AuthSettings = field(
        default_factory=AuthSettings,
        metadata=_meta("SMTP AUTH for submission: mechanisms and brute-force limits."),
    )
    policy: PolicySettings = field(
        default_factory=PolicySettings,
        metadata=_meta("Access rules per SMTP stage and per-IP rate limits."),
    )
    trace: TraceSettings = field(
        default_factory=TraceSettings,
        metadata=_meta("The flight recorder behind hato trace."),
    )
    metrics: MetricsSettings = field(
        default_factory=MetricsSettings,
        metadata=_meta("Prometheus metrics and where they are served."),
    )
    pipeline: PipelineSettings = field(
        default_factory=PipelineSettings,
        metadata=_meta("The message filters: their time limit and what a failure means."),
    )
    dkim: DkimSettings = field(
        default_factory=DkimSettings,
        metadata=_meta("DKIM signing of outgoing mail from local domains."),
    )
    mailauth: MailAuthSettings = field(
        default_factory=MailAuthSettings,
        metadata=_meta("SPF, DKIM, DMARC and ARC checks of incoming mail; forwarding with SRS."),
    )
    web: WebSettings = field(
        default_factory=WebSettings,
        metadata=_meta("The HTTP service: the JSON API, its users and tokens."),
    )
