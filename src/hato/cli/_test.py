"""``hato test TARGET``: look up, connect, talk SMTP step by step, and explain the result.
``hato test DOMAIN --dns``: the domain's SPF, DMARC, DKIM, MTA-STS and TLS-RPT records.
``hato test --self``: what a receiver will think of this server (reverse DNS, blocklists,
SPF, DKIM and DMARC of the local domains, the certificate).
``hato test --receive``: a test address for an hour; mail sent to it from elsewhere is
analysed, not delivered (``--wait`` for the analysis, ``--show ADDRESS`` a stored one).

Exit status: 0 when every requested step (or check) passed (warnings allowed), 1 when the
target failed one, 2 for a usage error. A server that misbehaves in any way gets a diagnosis,
never a traceback or a hang: every wait is bounded by --timeout (and --wait).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..accounts import ACCOUNTS_FILE, AccountError, AccountStore, InvalidInput, normalize_domain
from ..config import SERVER_RECORD, ListenAddress, Settings, read_server_record
from ..delivery import MaildirAgent
from ..diag import (
    PROBES_DIR,
    Options,
    OwnServer,
    Plan,
    ProbeError,
    ProbeRecord,
    ProbeStore,
    ReportMailbox,
    SelfPlan,
    StandingReport,
    TargetError,
    dnsbl_zones,
    new_envid,
    outgoing_address,
    parse_server,
    parse_target,
    render,
    render_analysis,
    render_standing,
    run,
    session_timings,
    standing_dns,
    standing_self,
    test_message,
)
from ..mailauth import DkimKeys, MailDns, check_spf
from ..routing import LocalRouter
from ..trace import PARTIAL_AFTER, TRACE_FILE, TraceStore, TraceVersionError
from ._common import config_options, data_settings, override_option

__all__ = ["test"]

DEFAULT_TIMEOUT = 30.0
DEFAULT_WAIT = 120.0
# How long --receive --wait looks for the session's lines in the flight recorder once the
# analysis is there: a session is written when it ends, or, one kept open for the next
# message (as senders do), once its lines are PARTIAL_AFTER old.
SESSION_WAIT = PARTIAL_AFTER + 3.0
POLL = 0.25
EXAMPLES = """Examples:
  hato test user@example.com
  hato test example.com --all-mx
  hato test 127.0.0.1:2525 --to postmaster@localhost --send
  hato test user@example.com --send --dsn --wait --from postmaster@your.host
  hato test example.com --dns
  hato test --self --dnsbl zen.spamhaus.org
  hato test --receive --wait --timeout 600"""


def _usage(message: str) -> click.UsageError:
    return click.UsageError(f"{message}\n\n{EXAMPLES}")


@click.command(epilog=EXAMPLES.replace("\n", "\n\n\b\n", 1))
@click.argument("target", required=False)
@click.option(
    "--dns",
    "dns_records",
    is_flag=True,
    help="Check the domain's published SPF, DMARC, DKIM, MTA-STS and TLS-RPT records.",
)
@click.option(
    "--self",
    "self_test",
    is_flag=True,
    help="Check what receivers will think of this server: reverse DNS, blocklists, SPF, "
    "DKIM, DMARC and the certificate.",
)
@click.option(
    "--address",
    metavar="IP",
    help="With --self: the sending address to judge (default: the one the kernel would use).",
)
@click.option(
    "--dnsbl",
    "dnsbl",
    multiple=True,
    metavar="ZONE",
    help="With --self: a DNS blocklist to look the address up in (besides those of [policy]).",
)
@click.option(
    "--receive",
    is_flag=True,
    help="Make a test address for an hour: mail sent to it is analysed here (session, TLS, "
    "reverse DNS, blocklists, SPF, DKIM, DMARC, hops, header), never delivered.",
)
@click.option(
    "--domain",
    "probe_domain",
    metavar="DOMAIN",
    help="With --receive: the local domain of the test address (default: the first local "
    "domain that is not localhost, else server.hostname).",
)
@click.option(
    "--show",
    "show_address",
    metavar="ADDRESS",
    help="With --receive: print what arrived at a test address made before.",
)
@click.option("--server", metavar="HOST[:PORT]", help="Talk to this server; skip the MX lookup.")
@click.option("--all-mx", is_flag=True, help="Test every MX host, not only the first that answers.")
@click.option(
    "--from",
    "sender",
    metavar="ADDRESS",
    help="Reverse-path for MAIL FROM (default: the --auth-user, else postmaster@<our hostname>).",
)
@click.option(
    "--to",
    "recipient",
    metavar="ADDRESS",
    help="Recipient for RCPT TO (default: the TARGET address, else postmaster).",
)
@click.option("--no-tls", is_flag=True, help="Do not try STARTTLS.")
@click.option(
    "--require-tls",
    is_flag=True,
    help="Fail without STARTTLS or with a certificate a verifying client refuses.",
)
@click.option("--auth-user", metavar="USER", help="AUTH (PLAIN, else LOGIN) as USER.")
@click.option(
    "--auth-password",
    metavar="PASSWORD",
    help="Password for --auth-user (asked for when not given).",
)
@click.option("--dsn", is_flag=True, help="Ask for reports: NOTIFY=SUCCESS,FAILURE and an ENVID.")
@click.option("--send", is_flag=True, help="Send a test message (DATA); otherwise RSET.")
@click.option(
    "--wait",
    type=float,
    is_flag=False,
    flag_value=DEFAULT_WAIT,
    default=None,
    metavar="[SECONDS]",
    help=f"With --send --dsn: wait for the delivery report in the --from mailbox "
    f"(default {DEFAULT_WAIT:g} s). With --receive: wait for a message to the new address "
    "(for --timeout seconds when given).",
)
@click.option(
    "--relay-test", is_flag=True, help="Try the open-relay address forms (never sends DATA)."
)
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds for each connection, reply, handshake and DNS lookup.",
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@config_options
@override_option
def test(
    target: str | None,
    dns_records: bool,
    self_test: bool,
    address: str | None,
    dnsbl: tuple[str, ...],
    receive: bool,
    probe_domain: str | None,
    show_address: str | None,
    server: str | None,
    all_mx: bool,
    sender: str | None,
    recipient: str | None,
    no_tls: bool,
    require_tls: bool,
    auth_user: str | None,
    auth_password: str | None,
    dsn: bool,
    send: bool,
    wait: float | None,
    relay_test: bool,
    timeout: float,
    as_json: bool,
    config_path: Path | None,
    data_dir: Path | None,
    settings_overrides: tuple[str, ...],
) -> None:
    """Test mail delivery to TARGET and explain the result.

    TARGET is an address (user@example.com), a domain, a host or IP address, or HOST:PORT.
    With --dns, the domain (or an address's domain) whose records to check; with --self,
    none: this server is judged; with --receive, none: mail comes to a test address.
    """
    if receive or probe_domain is not None or show_address is not None:
        if not receive:
            raise _usage("--domain and --show go with --receive")
        if target is not None or dns_records or self_test or send or server is not None:
            raise _usage("--receive takes no TARGET and goes with no other test")
        timeout_given = (
            click.get_current_context().get_parameter_source("timeout")
            is not click.core.ParameterSource.DEFAULT
        )
        _receive(
            data_settings(config_path, data_dir, settings_overrides),
            probe_domain,
            show_address,
            (timeout if timeout_given else wait) if wait is not None else None,
            as_json,
        )
    if dns_records or self_test or address is not None or dnsbl:
        _standing(
            target,
            dns_records,
            self_test,
            address,
            dnsbl,
            timeout,
            as_json,
            data_settings(config_path, data_dir, settings_overrides, require=False),
        )
    if target is None:
        raise _usage("give a TARGET (or --self)")
    try:
        parsed = parse_target(target)
        server_address = parse_server(server) if server is not None else None
    except TargetError as error:
        raise _usage(str(error)) from None
    if no_tls and require_tls:
        raise _usage("--no-tls and --require-tls exclude each other")
    if not timeout > 0:
        raise _usage("--timeout must be more than 0 seconds")
    if wait is not None and not (send and dsn):
        raise _usage("--wait needs --send and --dsn: the report is asked for with DSN")
    if wait is not None and not wait > 0:
        raise _usage("--wait must be more than 0 seconds")
    if auth_password is not None and auth_user is None:
        raise _usage("--auth-password needs --auth-user")
    settings = data_settings(config_path, data_dir, settings_overrides, require=False)
    hostname = settings.server.hostname
    if sender is None:
        # After AUTH a server takes only the login's own addresses as sender (Hato does).
        sender = auth_user if auth_user and "@" in auth_user else f"postmaster@{hostname}"
    if recipient is None:
        recipient = parsed.address or (f"postmaster@{parsed.domain}" if parsed.domain else None)
        recipient = recipient or "postmaster"
    for what, value in (("--from", sender), ("--to", recipient)):
        if "@" not in value and not (what == "--to" and value.lower() == "postmaster"):
            raise _usage(f"{what} {value!r}: expected an address such as user@example.com")
    mailbox = _report_mailbox(settings, sender) if wait is not None else None
    if auth_user is not None and auth_password is None:
        auth_password = click.prompt(
            f"Password for {auth_user}", hide_input=True, err=True, default="", show_default=False
        )
    envid = new_envid() if dsn else None
    message, message_id = None, None
    if send:
        message, message_id = test_message(
            sender=sender, recipient=recipient, hostname=hostname, target=target, envid=envid
        )
    plan = Plan(
        sender=sender,
        recipient=recipient,
        local_hostname=hostname,
        timeout=timeout,
        tls="off" if no_tls else "require" if require_tls else "try",
        auth_user=auth_user,
        auth_password=auth_password,
        dsn=dsn,
        envid=envid,
        message=message,
        relay_test=relay_test,
        relay_domain=parsed.domain if parsed.domain and "[" not in parsed.domain else None,
        own_server=_own_server(settings) if relay_test else None,
    )
    nameservers = settings.dns.nameservers
    options = Options(
        target=parsed,
        plan=plan,
        server=server_address,
        all_mx=all_mx,
        nameservers=nameservers,
        dns_timeout=min(settings.dns.timeout, timeout),
        wait=wait,
        mailbox=mailbox,
        message_id=message_id,
    )
    try:
        report = asyncio.run(run(options))
        if as_json:
            click.echo(json.dumps(report.to_dict(), indent=2))
        else:
            render(report, sys.stdout, color=sys.stdout.isatty())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as error:  # a bug of ours: one line, not a traceback
        click.echo(f"hato test: internal error: {type(error).__name__}: {error}", err=True)
        raise SystemExit(1) from None
    raise SystemExit(0 if report.passed else 1)


def _standing(
    target: str | None,
    dns_records: bool,
    self_test: bool,
    address: str | None,
    dnsbl: tuple[str, ...],
    timeout: float,
    as_json: bool,
    settings: Settings,
) -> None:
    """``--dns`` or ``--self``; exits with the status the report earns."""
    if dns_records and self_test:
        raise _usage("--dns and --self exclude each other: run one, then the other")
    if not (dns_records or self_test):
        raise _usage("--address and --dnsbl go with --self")
    if not timeout > 0:
        raise _usage("--timeout must be more than 0 seconds")
    if dns_records and (address is not None or dnsbl):
        raise _usage("--address and --dnsbl go with --self, not --dns")
    data_dir = settings.server.data_dir
    resolver = MailDns(settings.dns.nameservers, min(settings.dns.timeout, timeout))
    nameservers = tuple(str(server) for server in settings.dns.nameservers)
    keys = DkimKeys(data_dir / "dkim")
    hosted = _hosted_domains(settings)
    report: StandingReport
    if dns_records:
        if target is None:
            raise _usage("--dns needs the DOMAIN to check")
        try:
            parsed = parse_target(target)
        except TargetError as error:
            raise _usage(str(error)) from None
        if parsed.domain is None or parsed.domain.startswith("["):
            raise _usage(f"--dns checks a domain's records, and {target!r} names no domain")
        domain = parsed.domain

        def work() -> StandingReport:
            return standing_dns(
                resolver, domain, nameservers=nameservers, keys=keys, hosted=domain in hosted
            )

    else:
        if target is not None:
            raise _usage("--self judges this server: give no TARGET")
        source = "given with --address"
        if address is not None:
            try:
                address = str(ipaddress.ip_address(address.strip("[]")))
            except ValueError:
                raise _usage(f"--address {address!r} is not an IP address") from None
        else:
            try:
                address, source = outgoing_address()
            except OSError as error:
                raise _usage(
                    f"--self: no route to the Internet to find the sending address ({error});"
                    " give --address"
                ) from None
        policy = settings.policy
        rules = (*policy.connect, *policy.helo, *policy.mail, *policy.rcpt, *policy.data)
        certificate = settings.tls.certificate
        plan = SelfPlan(
            hostname=settings.server.hostname,
            address=address,
            domains=tuple(d for d in sorted(hosted) if "." in d),
            dnsbl_zones=dnsbl_zones((rule.dnsbl for rule in rules), dnsbl),
            certificate=certificate or data_dir / "tls" / "cert.pem",
            certificate_configured=certificate is not None,
        )
        sent_from = address

        def work() -> StandingReport:
            return standing_self(
                resolver,
                plan,
                nameservers=nameservers,
                address_source=f"{sent_from}, {source}",
                keys=keys,
                check_spf=check_spf,
            )

    try:
        report = work()
        if as_json:
            click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            render_standing(report, sys.stdout, color=sys.stdout.isatty())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as error:  # a bug of ours: one line, not a traceback
        click.echo(f"hato test: internal error: {type(error).__name__}: {error}", err=True)
        raise SystemExit(1) from None
    raise SystemExit(0 if report.passed else 1)


def _hosted_domains(settings: Settings) -> set[str]:
    """The domains this Hato hosts: the configuration's and the account store's."""
    domains = {domain.lower() for domain in settings.server.local_domains}
    accounts_path = settings.server.data_dir / ACCOUNTS_FILE
    if accounts_path.is_file():
        try:
            with AccountStore(
                accounts_path,
                case_sensitive=settings.accounts.case_sensitive_local_parts,
                config_domains=settings.server.local_domains,
            ) as store:
                domains.update(store.domains())
        except AccountError:
            pass  # the SMTP side reports a broken store; here the configuration's will do
    domains.discard("localhost")
    return domains


def _own_server(settings: Settings) -> OwnServer:
    """This machine's Hato: as its last ``hato serve`` recorded it, else as configured here."""
    data_dir = settings.server.data_dir
    record = read_server_record(data_dir)
    if record is not None:
        parsed = [ListenAddress.parse(text) for text in record.listening]
        return OwnServer(
            listening=tuple((a.host, a.port) for a in parsed),
            trusted_networks=record.trusted_networks,
            source=f"as hato serve recorded it in {data_dir / SERVER_RECORD}",
        )
    server = settings.server
    listeners = (*server.listen, *server.implicit_tls_listen, *server.submission_listen)
    return OwnServer(
        listening=tuple((a.host, a.port) for a in listeners),
        trusted_networks=settings.relay.trusted_networks,
        source="as the configuration loaded here says",
    )


def _report_mailbox(settings: Settings, sender: str) -> ReportMailbox:
    """The Maildirs where reports to ``sender`` land; a usage error if none is here."""
    data_dir = settings.server.data_dir
    accounts_path = data_dir / ACCOUNTS_FILE
    if not accounts_path.is_file():
        raise _usage(
            f"--wait needs this Hato's data directory, and {data_dir} has no account store "
            "(give --data-dir or --config)"
        )
    accounts = settings.accounts
    try:
        with AccountStore(
            accounts_path,
            case_sensitive=accounts.case_sensitive_local_parts,
            config_domains=settings.server.local_domains,
        ) as store:
            router = LocalRouter(
                store,
                config_domains=settings.server.local_domains,
                hostname=settings.server.hostname,
                delimiter=accounts.recipient_delimiter,
                case_sensitive=accounts.case_sensitive_local_parts,
                postmaster=accounts.postmaster,
            )
            expansion = router.expand(sender)
    except AccountError as error:
        raise _usage(f"--from {sender}: {error}") from None
    if not expansion.mailboxes:
        raise _usage(
            f"--wait: the report goes to the --from address, and {sender} is not a mailbox "
            f"this Hato hosts (local domains: {', '.join(settings.server.local_domains)})"
        )
    agent = MaildirAgent(data_dir / "mailboxes", hostname=settings.server.hostname)
    maildirs = tuple(agent.mailbox_dir(m.domain, m.local_part) for m in expansion.mailboxes)
    return ReportMailbox(sender, maildirs)


def _receive(
    settings: Settings,
    domain: str | None,
    show: str | None,
    wait: float | None,
    as_json: bool,
) -> None:
    """``--receive``: make a test address (and wait for its analysis), or show one."""
    if wait is not None and not wait > 0:
        raise _usage("--wait (or --timeout) must be more than 0 seconds")
    data_dir = settings.server.data_dir
    store = ProbeStore(data_dir / PROBES_DIR)
    try:
        if show is not None:
            if domain is not None:
                raise _usage("--show reads an address made before: give no --domain")
            record = store.get(show)
            if record is None:
                click.echo(f"hato test: {show} is no test address made in {data_dir}", err=True)
                raise SystemExit(1)
            if wait is not None and not record.analyses:
                record = _wait_for_message(store, record, wait)
        else:
            record = store.create(_probe_domain(settings, domain))
            if as_json and wait is None:
                click.echo(json.dumps(record.to_dict(), indent=2))
                raise SystemExit(0)
            until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(record.expires))
            click.echo(
                f"Test address: {record.address}\n"
                f"Send a message to it from the system to test, until {until}."
                + (
                    ""
                    if wait is not None
                    else f"\nThen: hato test --receive --show {record.address}"
                ),
                err=as_json,
            )
            if wait is None:
                raise SystemExit(0)
            record = _wait_for_message(store, record, wait)
    except ProbeError as error:
        click.echo(f"hato test: {error}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    data = _with_timings(record, data_dir, settle=wait is not None)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render_analysis(data, sys.stdout)
    raise SystemExit(0 if data["analyses"] else 1)


def _probe_domain(settings: Settings, domain: str | None) -> str:
    hosted = _hosted_domains(settings)
    if domain is not None:
        try:
            name = normalize_domain(domain)
        except InvalidInput as error:
            raise _usage(f"--domain {domain!r}: {error}") from None
        if name not in hosted and name != normalize_domain(settings.server.hostname):
            raise _usage(
                f"--domain {domain}: not a local domain here (local: {', '.join(sorted(hosted))})"
            )
        return name
    for configured in settings.server.local_domains:
        if configured.lower() != "localhost":
            return normalize_domain(configured)
    others = sorted(hosted)
    return others[0] if others else normalize_domain(settings.server.hostname)


def _wait_for_message(store: ProbeStore, record: ProbeRecord, wait: float) -> ProbeRecord:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = store.get(record.address)
        if found is not None and found.analyses:
            return found
        time.sleep(POLL)
    click.echo(f"hato test: no message reached {record.address} within {wait:g} s", err=True)
    raise SystemExit(1)


def _has_data_end(story: dict[str, Any] | None) -> bool:
    """Whether a session's recorded lines reach the reply to the end of its data."""
    if story is None:
        return False
    if story.get("ended"):
        return True
    in_data = False
    for line in story.get("transcript") or []:
        text = str(line.get("text", ""))
        if line.get("direction") == "C" and text[:4].upper() in ("DATA", "BDAT"):
            in_data = True
        elif in_data and line.get("direction") == "S" and not text.startswith("354"):
            return True
    return False


def _with_timings(record: ProbeRecord, data_dir: Path, *, settle: bool) -> dict[str, Any]:
    """The record, each analysis with its session's command timings when the flight
    recorder has them (``settle``: waiting a moment for a session still ending)."""
    data = record.to_dict()
    path = data_dir / TRACE_FILE
    if not data["analyses"] or not path.is_file():
        return data
    deadline = time.monotonic() + (SESSION_WAIT if settle else 0.0)
    try:
        with TraceStore(path, readonly=True) as trace:
            for analysis in data["analyses"]:
                session_id = (analysis.get("session") or {}).get("id")
                if not session_id:
                    continue
                while True:
                    story = trace.session(session_id)
                    if _has_data_end(story) or time.monotonic() > deadline:
                        break
                    time.sleep(POLL)
                if story is not None:
                    analysis["timings"] = session_timings(story)
    except (TraceVersionError, OSError, sqlite3.Error) as error:
        click.echo(f"hato test: the flight recorder could not be read ({error})", err=True)
    return data
