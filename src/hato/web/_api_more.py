"""The API over ``hato test``'s engine: DNS records per local domain, diagnostics, test
addresses.

- ``GET /api/v1/dns`` and ``GET /api/v1/dns/{domain}``: what a local domain should publish
  (MX, SPF, the DKIM keys' TXT records, DMARC; MTA-STS and TLS-RPT once published) beside
  what DNS says now, through the checks of ``hato test DOMAIN --dns`` (in a thread: they
  are synchronous lookups, each bounded by ``dns.timeout``).
- ``POST /api/v1/diagnostics``: ``hato test TARGET`` from this server, its steps streamed as
  server-sent events as they are taken, then the report. Admin only (it makes this server
  connect anywhere); at most ``MAX_RUNS`` at once (429 beyond), each bounded by its
  ``timeout`` per step and ``run_limit`` overall; a client that goes away stops its run.
- ``POST /api/v1/probes`` and ``GET /api/v1/probes/{address}``: a test address as
  ``hato test --receive`` makes, and what arrived at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from hato.accounts import AccountError, InvalidInput, display_domain, normalize_domain
from hato.diag import (
    PROBES_DIR,
    Check,
    HostReport,
    Options,
    OwnServer,
    Plan,
    ProbeError,
    ProbeRecord,
    ProbeStore,
    StandingReport,
    Step,
    TargetError,
    new_envid,
    outgoing_address,
    parse_server,
    parse_target,
    run,
    session_timings,
    split_probe,
    standing_dns,
    test_message,
)
from hato.events import InternalError
from hato.mailauth import (
    DkimKeyError,
    DkimKeys,
    MailDns,
    TemporaryDnsError,
    dns_record,
)
from hato.trace import TRACE_FILE, TraceStore, TraceVersionError
from hato.web._app import ApiError, Handler, WebContext, _json_body

__all__ = ["MAX_RUNS", "MAX_TIMEOUT", "Diagnostics", "more_routes"]

# Runs at once per server: each holds sockets and a thread of DNS lookups, and a run is
# something a person starts and watches, not a load to serve.
MAX_RUNS = 2
# hato test's --timeout: per connection, reply, handshake and lookup (seconds).
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 120.0
# A whole run: several MX hosts, each with several addresses and a dozen steps, could add
# up to far more than one person waits for; past this the run stops with what it has.
RUN_STEPS = 10
MAX_RUN = 600.0
# The key store's directory under the data directory (as app.py and hato dkim keep it).
DKIM_DIR = "dkim"
_TLS_MODES = ("try", "off", "require")
# The key states a verifier may look up: a retired key is no longer published.
_PUBLISHED = ("pending", "active", "retiring")


def _options_run_limit(timeout: float) -> float:
    return min(timeout * RUN_STEPS, MAX_RUN)


# -- local domains ----------------------------------------------------------------------------


def _local_domains(context: WebContext) -> list[str]:
    """The domains this server hosts (configuration and account store), localhost aside."""
    domains = {normalize_domain(name) for name in context.settings.server.local_domains}
    # A broken store is the SMTP side's to report; the configuration's domains will do.
    with contextlib.suppress(AccountError):
        domains.update(context.accounts.domains())
    domains.discard("localhost")
    return sorted(domains)


def _domain_param(text: str) -> str:
    try:
        return normalize_domain(text)
    except InvalidInput as error:
        raise ApiError(400, f"not a domain: {text!r} ({error})") from None


# -- DNS --------------------------------------------------------------------------------------


async def _dns_domains(request: Request, context: WebContext) -> Response:
    domains = await asyncio.to_thread(_local_domains, context)
    rows = [
        {"domain": name, "unicode": display_domain(name), "records": f"/api/v1/dns/{name}"}
        for name in domains
    ]
    return JSONResponse({"hostname": context.settings.server.hostname, "domains": rows})


def _record(
    kind: str,
    name: str,
    rtype: str,
    value: str,
    *,
    status: str,
    zone: str | None = None,
    published: list[str] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "type": rtype,
        "value": value,
        "zone": zone or f'{name}. IN {rtype} "{value}"',
        "status": status,
        "published": published or [],
        "note": note,
    }


def _mx_record(dns: MailDns, domain: str, hostname: str) -> dict[str, Any]:
    """MX towards server.hostname: ok when DNS names it, else missing (none) or differs."""
    exchange = hostname.rstrip(".").lower()
    value = f"10 {exchange}."
    try:
        found = dns.query(domain, "MX")
    except TemporaryDnsError as error:
        return _record(
            "mx",
            domain,
            "MX",
            value,
            status="unknown",
            zone=f"{domain}. IN MX {value}",
            note=f"DNS gave no answer to rely on: {error}",
        )
    names = [answer.split()[-1].rstrip(".").lower() for answer in found if answer.split()]
    if exchange in names:
        status, note = "ok", None
    elif found:
        status = "differs"
        note = f"DNS names {', '.join(found)}; mail for {domain} does not come here"
    else:
        status = "missing"
        note = f"no MX record: senders try {domain}'s own address (implicit MX) or give up"
    return _record(
        "mx",
        domain,
        "MX",
        value,
        status=status,
        zone=f"{domain}. IN MX {value}",
        published=found,
        note=note,
    )


def _spf_value(hostname: str) -> tuple[str, str]:
    """The SPF record to publish, and where its address came from."""
    try:
        address, source = outgoing_address()
    except OSError:
        return "v=spf1 mx -all", "no route to the Internet: add this server's ip4:/ip6: term"
    term = "ip6" if ":" in address else "ip4"
    return f"v=spf1 mx {term}:{address} -all", f"{address}: {source}"


def _check_status(check: Check | None) -> str:
    """A record's status from its check: ok, missing, differs, warn, fail or unknown."""
    if check is None:
        return "unknown"
    codes = {item.code for item in check.findings}
    if check.status == "none" or codes & _MISSING:
        return "missing"
    if codes & _DIFFERS:
        return "differs"
    return check.status


# The findings that say a record is not published at all, or is another than ours.
_MISSING = frozenset({"spf-none", "dmarc-none", "dkim-missing"})
_DIFFERS = frozenset({"dkim-mismatch"})


def _by_name(report: StandingReport, name: str) -> list[Check]:
    return [check for check in report.checks if check.name == name]


def _dns_view(context: WebContext, domain: str) -> dict[str, Any]:
    settings = context.settings
    hostname = settings.server.hostname
    dns = MailDns(settings.dns.nameservers, settings.dns.timeout)
    keys = DkimKeys(context.data_dir / DKIM_DIR)
    report = standing_dns(
        dns,
        domain,
        nameservers=tuple(str(server) for server in settings.dns.nameservers),
        keys=keys,
        hosted=True,
    )
    records = [_mx_record(dns, domain, hostname)]
    spf_value, spf_source = _spf_value(hostname)
    spf = _by_name(report, "spf")
    records.append(
        _record(
            "spf",
            domain,
            "TXT",
            spf_value,
            status=_check_status(spf[0] if spf else None),
            published=[spf[0].record] if spf and spf[0].record else [],
            note=spf_source,
        )
    )
    dkim_checks = {check.subject: check for check in _by_name(report, "dkim")}
    try:
        mine = [key for key in keys.keys(domain) if key.state in _PUBLISHED]
    except DkimKeyError as error:
        mine = []
        records.append(
            _record("dkim", domain, "TXT", "", status="unknown", note=f"key store: {error}")
        )
    if not mine and records[-1]["kind"] != "dkim":
        records.append(
            _record(
                "dkim",
                f"SELECTOR._domainkey.{domain}",
                "TXT",
                "",
                status="missing",
                note=f"no key yet: hato dkim keygen {domain}, then publish the record it prints",
            )
        )
    for key in mine:
        try:
            wanted = dns_record(key)
        except DkimKeyError as error:
            records.append(
                _record("dkim", key.record_name, "TXT", "", status="unknown", note=str(error))
            )
            continue
        check = dkim_checks.get(key.record_name)
        records.append(
            _record(
                "dkim",
                wanted.name,
                "TXT",
                wanted.value,
                status=_check_status(check),
                zone=wanted.zone_line,
                note=f"selector {key.selector}, {key.algorithm}, {key.state}",
            )
        )
    dmarc = _by_name(report, "dmarc")
    records.append(
        _record(
            "dmarc",
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}",
            status=_check_status(dmarc[0] if dmarc else None),
            published=[dmarc[0].record] if dmarc and dmarc[0].record else [],
            note="start with p=none and read the reports; then p=quarantine, then p=reject",
        )
    )
    for name in ("mta-sts", "tls-rpt"):
        for check in _by_name(report, name):
            if check.record is not None:  # only once the domain publishes one
                records.append(
                    _record(
                        name,
                        check.subject,
                        "TXT",
                        check.record,
                        status=_check_status(check),
                        published=[check.record],
                    )
                )
    data = report.to_dict()
    return {
        "domain": domain,
        "unicode": display_domain(domain),
        "hostname": hostname,
        "nameservers": data["nameservers"],
        "records": records,
        "checks": data["checks"],
        "findings": data["findings"],
        "passed": data["passed"],
        "verdict": data["verdict"],
    }


async def _dns_domain(request: Request, context: WebContext) -> Response:
    domain = _domain_param(request.path_params["domain"])
    if domain not in await asyncio.to_thread(_local_domains, context):
        raise ApiError(404, f"{domain} is not a local domain here (GET /api/v1/dns lists them)")
    return JSONResponse(await asyncio.to_thread(_dns_view, context, domain))


# -- diagnostics ------------------------------------------------------------------------------


@dataclass(slots=True)
class Diagnostics:
    """The runs going on now: a slot is taken before the response starts and given back
    when it ends, however it ends."""

    limit: int = MAX_RUNS
    running: int = 0

    def take(self) -> None:
        if self.running >= self.limit:
            raise ApiError(
                429,
                f"{self.running} diagnostics are running (at most {self.limit} at once);"
                " try again when one has finished",
                {"Retry-After": "10"},
            )
        self.running += 1

    def give_back(self) -> None:
        self.running = max(0, self.running - 1)


class _RunResponse(StreamingResponse):
    """A stream that gives its run's slot back even when it never started (the client
    left before the first byte)."""

    def __init__(self, stream: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{key} must be a non-empty string")
    return value.strip()


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"{key} must be true or false")
    return value


_DIAG_KEYS = frozenset(
    {
        "target",
        "server",
        "all_mx",
        "from",
        "to",
        "tls",
        "auth_user",
        "auth_password",
        "dsn",
        "send",
        "relay_test",
        "timeout",
    }
)


def _diag_options(context: WebContext, body: dict[str, Any]) -> Options:
    """The body as ``hato test``'s options, with the CLI's checks; ApiError 400 otherwise."""
    unknown = sorted(set(body) - _DIAG_KEYS)
    if unknown:
        raise ApiError(
            400, f"unknown option {', '.join(unknown)}; known: {', '.join(sorted(_DIAG_KEYS))}"
        )
    target = _text(body, "target")
    if target is None:
        raise ApiError(400, "target is required: an address, a domain, a host or HOST:PORT")
    server = _text(body, "server")
    try:
        parsed = parse_target(target)
        server_address = parse_server(server) if server is not None else None
    except TargetError as error:
        raise ApiError(400, str(error)) from None
    tls = body.get("tls", "try")
    if tls not in _TLS_MODES:
        raise ApiError(400, f"tls must be one of {', '.join(_TLS_MODES)}")
    timeout = body.get("timeout", DEFAULT_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise ApiError(400, f"timeout is seconds, more than 0 and at most {MAX_TIMEOUT:g}")
    auth_user, auth_password = _text(body, "auth_user"), body.get("auth_password")
    if auth_password is not None and (auth_user is None or not isinstance(auth_password, str)):
        raise ApiError(400, "auth_password is a string, and needs auth_user")
    dsn, send, relay_test = _flag(body, "dsn"), _flag(body, "send"), _flag(body, "relay_test")
    all_mx = _flag(body, "all_mx")
    hostname = context.settings.server.hostname
    sender = _text(body, "from")
    if sender is None:
        sender = auth_user if auth_user and "@" in auth_user else f"postmaster@{hostname}"
    recipient = _text(body, "to")
    if recipient is None:
        recipient = parsed.address or (f"postmaster@{parsed.domain}" if parsed.domain else None)
        recipient = recipient or "postmaster"
    for what, value in (("from", sender), ("to", recipient)):
        if "@" not in value and not (what == "to" and value.lower() == "postmaster"):
            raise ApiError(400, f"{what} {value!r}: expected an address such as user@example.com")
    envid = new_envid() if dsn else None
    message, message_id = None, None
    if send:
        message, message_id = test_message(
            sender=sender, recipient=recipient, hostname=hostname, target=target, envid=envid
        )
    settings = context.settings
    plan = Plan(
        sender=sender,
        recipient=recipient,
        local_hostname=hostname,
        timeout=float(timeout),
        tls=tls,
        auth_user=auth_user,
        auth_password=auth_password if auth_user is not None else None,
        dsn=dsn,
        envid=envid,
        message=message,
        relay_test=relay_test,
        relay_domain=parsed.domain if parsed.domain and "[" not in parsed.domain else None,
        own_server=_own_server(context) if relay_test else None,
    )
    return Options(
        target=parsed,
        plan=plan,
        server=server_address,
        all_mx=all_mx,
        nameservers=settings.dns.nameservers,
        dns_timeout=min(settings.dns.timeout, float(timeout)),
        message_id=message_id,
    )


def _own_server(context: WebContext) -> OwnServer:
    """This very server, so a relay it allows for a trusted network is not "open"."""
    server = context.settings.server
    listeners = (*server.listen, *server.implicit_tls_listen, *server.submission_listen)
    return OwnServer(
        listening=tuple((a.host, a.port) for a in listeners),
        trusted_networks=context.settings.relay.trusted_networks,
        source="the configuration of the server running this test",
    )


def _step_record(host: HostReport, step: Step) -> dict[str, Any]:
    return {"host": host.host, "address": host.address, "port": host.port, **asdict(step)}


async def _run_stream(context: WebContext, options: Options) -> AsyncIterator[str]:
    steps: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def on_step(host: HostReport, step: Step) -> None:
        steps.put_nowait(_step_record(host, step))

    limit = _options_run_limit(options.plan.timeout)
    options = dataclasses.replace(options, on_step=on_step)
    task = asyncio.ensure_future(asyncio.wait_for(run(options), limit))
    task.add_done_callback(lambda _: steps.put_nowait(None))
    try:
        yield _sse("start", {"target": options.target.text, "limit": limit})
        while (item := await steps.get()) is not None:
            yield _sse("step", item)
        try:
            report = task.result()
        except TimeoutError:
            yield _sse("error", {"error": f"the run took longer than {limit:g} s and stopped"})
            return
        except Exception as error:  # a bug of ours: an event, never a traceback
            context.log.emit(InternalError(where="web diagnostics", error=repr(error)))
            yield _sse("error", {"error": "internal error; the event log has the details"})
            return
        yield _sse("report", report.to_dict())
    finally:
        task.cancel()


def _diagnostics_endpoint(runs: Diagnostics) -> Handler:
    async def endpoint(request: Request, context: WebContext) -> Response:
        options = _diag_options(context, await _json_body(request))
        runs.take()
        return _RunResponse(_run_stream(context, options), runs.give_back)

    return endpoint


# -- test addresses ---------------------------------------------------------------------------


def _probe_store(context: WebContext) -> ProbeStore:
    return ProbeStore(context.data_dir / PROBES_DIR)


def _probe_domain(context: WebContext, wanted: str | None) -> str:
    """As ``hato test --receive --domain``: a local domain, by default the first configured
    one that is not localhost, else server.hostname."""
    hosted = _local_domains(context)
    hostname = normalize_domain(context.settings.server.hostname)
    if wanted is not None:
        name = _domain_param(wanted)
        if name not in hosted and name != hostname:
            raise ApiError(
                400, f"domain {wanted}: not a local domain here (local: {', '.join(hosted)})"
            )
        return name
    for configured in context.settings.server.local_domains:
        if configured.lower() != "localhost":
            return normalize_domain(configured)
    return hosted[0] if hosted else hostname


def _probe_view(record: ProbeRecord, context: WebContext) -> dict[str, Any]:
    data = record.to_dict()
    data["live"] = record.live()
    data["state"] = "received" if record.analyses else "waiting" if data["live"] else "expired"
    path = context.data_dir / TRACE_FILE
    if data["analyses"] and path.is_file():
        try:
            with TraceStore(path, readonly=True) as trace:
                for analysis in data["analyses"]:
                    session_id = (analysis.get("session") or {}).get("id")
                    story = trace.session(session_id) if session_id else None
                    if story is not None:
                        analysis["timings"] = session_timings(story)
        except (TraceVersionError, OSError) as error:
            data["timings_error"] = f"the flight recorder could not be read ({error})"
    return data


async def _probe_create(request: Request, context: WebContext) -> Response:
    body = await _json_body(request)
    unknown = sorted(set(body) - {"domain"})
    if unknown:
        raise ApiError(400, f"unknown field {', '.join(unknown)}; only domain is known")
    wanted = _text(body, "domain")

    def create() -> dict[str, Any]:
        domain = _probe_domain(context, wanted)
        try:
            record = _probe_store(context).create(domain)
        except ProbeError as error:
            raise ApiError(400, str(error)) from None
        return _probe_view(record, context)

    data = await asyncio.to_thread(create)
    until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(data["expires"]))
    data["instructions"] = (
        f"Send a message to {data['address']} from the system to test, until {until};"
        f" then GET /api/v1/probes/{data['address']}"
    )
    return JSONResponse(data, status_code=201)


async def _probe_show(request: Request, context: WebContext) -> Response:
    address = request.path_params["address"]
    if split_probe(address) is None:
        raise ApiError(400, f"{address!r} is not a test address (probe-...@domain)")

    def read() -> dict[str, Any] | None:
        try:
            record = _probe_store(context).get(address)
        except ProbeError as error:
            raise ApiError(503, str(error)) from None
        return _probe_view(record, context) if record is not None else None

    data = await asyncio.to_thread(read)
    if data is None:
        raise ApiError(404, f"{address} is no test address made here (POST /api/v1/probes)")
    return JSONResponse(data)


# -- routes -----------------------------------------------------------------------------------

Wrap = Callable[[Handler], Callable[[Request], Awaitable[Response]]]


def more_routes(api: Wrap, runs: Diagnostics | None = None) -> list[BaseRoute]:
    """The routes of this module, each wrapped by ``api`` (access control, JSON errors)."""
    runs = runs if runs is not None else Diagnostics()
    return [
        Route("/api/v1/dns", api(_dns_domains), methods=["GET"]),
        Route("/api/v1/dns/{domain:str}", api(_dns_domain), methods=["GET"]),
        Route("/api/v1/diagnostics", api(_diagnostics_endpoint(runs)), methods=["POST"]),
        Route("/api/v1/probes", api(_probe_create), methods=["POST"]),
        Route("/api/v1/probes/{address:str}", api(_probe_show), methods=["GET"]),
    ]
