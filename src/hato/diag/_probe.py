"""One server, step by step: connect, banner, EHLO (HELO), STARTTLS, AUTH, MAIL, RCPT,
DATA or RSET, the open-relay forms, QUIT. Every step is timed; every failure becomes a
finding from the catalog, and the conversation stops only where it cannot go on."""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..smtp import Command, Reply, Response, is_ip_address
from ._explain import explain_extension, finding, reply_finding
from ._report import Extension, Finding, HostReport, RelayCheck, Step, StepStatus
from ._tls import certificate_facts, not_yet_valid, unverified_context
from ._trust import OwnServer
from ._wire import Closed, Conversation, Garbled, ReplyTimeout

__all__ = ["RELAY_USER", "Plan", "StepListener", "probe", "relay_forms"]

# Told of each step as it is taken (the HTTP service streams them): the host and the step.
StepListener = Callable[[HostReport, Step], None]

# The foreign address the relay test asks for: a domain reserved by RFC 2606, so an open
# relay that accepts it still delivers nothing (the test never sends DATA anyway).
RELAY_USER = "hato-relay-test"
RELAY_DOMAIN = "example.net"
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What to do with each server (the same for every one)."""

    sender: str
    recipient: str
    local_hostname: str
    timeout: float
    tls: Literal["try", "off", "require"] = "try"
    auth_user: str | None = None
    auth_password: str | None = None
    dsn: bool = False
    envid: str | None = None
    message: bytes | None = None  # with --send: the test message, CRLF line ends
    relay_test: bool = False
    relay_domain: str | None = None  # the domain the relay forms pretend to be local
    own_server: OwnServer | None = None  # this machine's Hato, to tell trust from open relay


def relay_forms(local_domain: str) -> list[tuple[str, str]]:
    """The classic ways to ask a server to relay (RFC 5321 3.6.1, RFC 2505 2)."""
    user, foreign, local = RELAY_USER, RELAY_DOMAIN, local_domain
    return [
        ("foreign recipient", f"{user}@{foreign}"),
        ("percent hack", f"{user}%{foreign}@{local}"),
        ("source route", f"@{local}:{user}@{foreign}"),
        ("quoted local part", f'"{user}@{foreign}"@{local}'),
        ("bang path", f"{foreign}!{user}@{local}"),
    ]


class _Stop(Exception):
    """The conversation cannot go on; the finding that says why is already recorded."""


async def probe(
    host: str,
    address: str,
    port: int,
    plan: Plan,
    *,
    preference: int | None = None,
    on_step: StepListener | None = None,
) -> HostReport:
    """Talk to ``address``:``port`` (``host`` is the name it was found under)."""
    report = HostReport(host=host, address=address, port=port, preference=preference)
    conversation = Conversation(plan.timeout)
    session = _Session(report, conversation, plan, on_step)
    try:
        await session.run()
    except _Stop:
        pass
    finally:
        if report.failed:
            conversation.abort()
        else:
            await conversation.close()
        report.transcript = conversation.transcript
    return report


class _Session:
    def __init__(
        self,
        report: HostReport,
        conversation: Conversation,
        plan: Plan,
        on_step: StepListener | None = None,
    ) -> None:
        self.report = report
        self.on_step = on_step
        self.conv = conversation
        self.conn = conversation.conn
        self.plan = plan
        self.host = report.host

    # -- bookkeeping -------------------------------------------------------------------

    def step(self, name: str, status: StepStatus, started: float, detail: str) -> None:
        now = self.conv.elapsed()
        taken = Step(
            name=name,
            status=status,
            started=started,
            duration=round(now - started, 3),
            detail=detail,
        )
        self.report.steps.append(taken)
        if self.on_step is not None:
            self.on_step(self.report, taken)

    def found(self, item: Finding) -> None:
        self.report.findings.append(item)

    def stop(self, name: str, started: float, item: Finding) -> _Stop:
        self.found(item)
        self.step(name, "fail", started, item.title)
        return _Stop()

    async def exchange(self, name: str, data: bytes | None) -> Response:
        """Send ``data`` (None: only read, for the banner) and take the reply."""
        started = self.conv.elapsed()
        command = name if name != "banner" else "the banner"
        try:
            if data is not None:
                await self.conv.send(data)
            return await self.conv.reply()
        except ReplyTimeout:
            code = "no-banner" if name == "banner" else "reply-timeout"
            item = finding(
                code,
                host=self.host,
                port=self.report.port,
                command=command,
                timeout=self.plan.timeout,
            )
        except Closed as error:
            item = finding("connection-reset", host=self.host, when=_when(name, error.detail))
        except Garbled as error:
            item = finding("garbage", host=self.host, detail=error.detail)
        raise self.stop(name, started, item)

    async def command(self, name: str, data: bytes) -> tuple[Response, float]:
        started = self.conv.elapsed()
        response = await self.exchange(name, data)
        if response.reply.code == 421 and response.command is not Command.QUIT:
            raise self.stop(
                name,
                started,
                finding("closing", host=self.host, command=name, reply=str(response.reply)),
            )
        return response, started

    # -- the conversation --------------------------------------------------------------

    async def run(self) -> None:
        await self.connect()
        await self.banner()
        await self.hello()
        await self.tls()
        if self.plan.auth_user is not None:
            await self.auth()
        if self.plan.dsn and not self.conn.dsn:
            self.found(finding("dsn-not-offered", host=self.host))
        await self.transaction()
        if self.plan.relay_test:
            await self.relay_test()
        await self.quit()

    async def connect(self) -> None:
        report, started = self.report, self.conv.elapsed()
        host, port, timeout = self.host, report.port, self.plan.timeout
        try:
            await self.conv.connect(report.address, report.port)
        except TimeoutError:
            raise self.stop(
                "connect",
                started,
                finding("connect-timeout", host=host, port=port, timeout=timeout),
            ) from None
        except ConnectionRefusedError:
            raise self.stop(
                "connect", started, finding("connection-refused", host=host, port=port)
            ) from None
        except OSError as error:
            detail = error.strerror or str(error) or type(error).__name__
            raise self.stop(
                "connect", started, finding("unreachable", host=host, port=port, detail=detail)
            ) from None
        report.client_address = self.conv.local_address
        self.step("connect", "pass", started, f"connected to {report.address}:{report.port}")

    async def banner(self) -> None:
        started = self.conv.elapsed()
        reply = (await self.exchange("banner", None)).reply
        words = reply.lines[0].split(None, 1)
        self.report.banner_host = words[0] if words else None
        self.report.banner_software = words[1] if len(words) > 1 else None
        if reply.code == 220:
            self.step("banner", "pass", started, str(reply))
            return
        code = {554: "banner-554", 421: "banner-421"}.get(reply.code, "banner-other")
        item = finding(code, host=self.host, reply=str(reply))
        self.found(item)
        self.step("banner", "fail", started, str(reply))
        await self.quit()
        raise _Stop()

    async def hello(self) -> None:
        name = self.plan.local_hostname
        response, started = await self.command("EHLO", self.conn.ehlo(name))
        if response.reply.is_positive:
            self.step("EHLO", "pass", started, _first_line(response.reply))
            self.record_extensions()
            return
        self.step(
            "EHLO", "warn" if response.reply.is_permanent else "fail", started, str(response.reply)
        )
        refused = response.reply
        if refused.is_permanent:
            # RFC 5321 3.2: a server that does not know EHLO answers 5xx; HELO is the way on.
            response, started = await self.command("HELO", self.conn.helo(name))
            if response.reply.is_positive:
                self.step("HELO", "pass", started, str(response.reply))
                self.found(finding("ehlo-refused-helo-ok", host=self.host, reply=str(refused)))
                self.report.extensions = []
                return
            raise self.stop(
                "HELO",
                started,
                finding("helo-refused", host=self.host, reply=str(response.reply), name=name),
            )
        item = reply_finding("EHLO", refused, host=self.host)
        self.found(item)
        await self.quit()
        raise _Stop()

    def record_extensions(self) -> None:
        self.report.extensions = [
            Extension(keyword=key, parameters=value, meaning=explain_extension(key, value))
            for key, value in self.conn.extensions.items()
        ]

    async def tls(self) -> None:
        mode, conn, started = self.plan.tls, self.conn, self.conv.elapsed()
        if mode == "off":
            self.step("STARTTLS", "skip", started, "not tried (--no-tls)")
            return
        if not conn.starttls_offered:
            if mode == "require":
                raise self.stop(
                    "STARTTLS", started, finding("no-starttls-required", host=self.host)
                )
            self.found(finding("no-starttls", host=self.host))
            self.step("STARTTLS", "warn", started, "not offered")
            return
        response, started = await self.command("STARTTLS", conn.starttls())
        if response.reply.code != 220:
            severity: Literal["fail", "warn"] = "fail" if mode == "require" else "warn"
            item = finding(
                "starttls-refused", host=self.host, reply=str(response.reply), severity=severity
            )
            if mode == "require":
                raise self.stop("STARTTLS", started, item)
            self.found(item)
            self.step("STARTTLS", "warn", started, str(response.reply))
            return
        self.step("STARTTLS", "pass", started, str(response.reply))
        await self.handshake()
        await self.hello()

    async def handshake(self) -> None:
        started = self.conv.elapsed()
        server_name = None if is_ip_address(self.host) else self.host
        try:
            injected = await self.conv.start_tls(unverified_context(), server_name)
        except (ssl.SSLError, OSError, TimeoutError) as error:
            detail = "timed out" if isinstance(error, TimeoutError) else str(error)
            raise self.stop(
                "TLS handshake",
                started,
                finding("tls-handshake", host=self.host, port=self.report.port, detail=detail),
            ) from None
        if injected:
            self.found(finding("starttls-injection", host=self.host))
        tls = self.conv.tls_object
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        version = tls.version() if tls is not None else None
        cipher_info = tls.cipher() if tls is not None else None
        cipher = cipher_info[0] if cipher_info else None
        if der is None:
            self.step("TLS handshake", "pass", started, f"{version}, {cipher}, no certificate")
            return
        try:
            # A sender checks the MX host name; for an IP address, the name the server
            # gives itself in its banner is the one a certificate could hold.
            expected = self.host if server_name else (self.report.banner_host or self.host)
            cert = certificate_facts(der, expected, tls_version=version, cipher=cipher)
        except ValueError as error:
            self.step("TLS handshake", "warn", started, f"unreadable certificate: {error}")
            return
        self.report.certificate = cert
        severity: Literal["fail", "warn"] = "fail" if self.plan.tls == "require" else "warn"
        problems = []
        if cert.days_left < 0:
            problems.append(
                finding("cert-expired", host=self.host, date=cert.not_after, severity=severity)
            )
        if not_yet_valid(cert):
            problems.append(
                finding(
                    "cert-not-yet-valid", host=self.host, date=cert.not_before, severity=severity
                )
            )
        if cert.self_signed:
            problems.append(
                finding("cert-self-signed", host=self.host, subject=cert.subject, severity=severity)
            )
        if not cert.name_matches:
            problems.append(
                finding(
                    "cert-name-mismatch",
                    host=self.host,
                    name=expected,
                    names=", ".join(cert.names) or cert.subject,
                    severity=severity,
                )
            )
        for item in problems:
            self.found(item)
        status: StepStatus = "pass" if not problems else severity
        self.step("TLS handshake", status, started, f"{version}, {cipher}")

    async def auth(self) -> None:
        conn, started = self.conn, self.conv.elapsed()
        user, password = self.plan.auth_user or "", self.plan.auth_password or ""
        mechanisms = conn.auth_mechanisms
        if not mechanisms:
            where = "" if conn.tls_active else " (before TLS)"
            raise self.stop(
                "AUTH", started, finding("auth-not-offered", host=self.host, where=where)
            )
        if "PLAIN" in mechanisms:
            response, started = await self.command("AUTH", conn.auth_plain(user, password))
        elif "LOGIN" in mechanisms:
            response, started = await self.command("AUTH", conn.auth_login(user, password))
            for _ in range(3):
                if response.reply.code != 334:
                    break
                response, _ = await self.command("AUTH", conn.auth_continue())
        else:
            raise self.stop(
                "AUTH",
                started,
                finding("auth-no-mechanism", host=self.host, mechanisms=" ".join(mechanisms)),
            )
        reply = response.reply
        if reply.code == 235:
            self.step("AUTH", "pass", started, str(reply))
            return
        if reply.code == 334:
            # Still challenged after both answers: cancel, as RFC 4954 4 allows.
            await self.command("AUTH", conn.auth_continue())
        code = "auth-other"
        if reply.code == 535:
            code = "auth-failed"
        elif reply.code in (534, 538) or (reply.enhanced or "") == "5.7.11":
            code = "auth-needs-tls"
        raise self.stop("AUTH", started, finding(code, host=self.host, reply=str(reply)))

    async def transaction(self) -> None:
        plan, conn = self.plan, self.conn
        utf8 = not (plan.sender + plan.recipient).isascii()
        size = len(plan.message) if plan.message is not None else None
        try:
            mail_line = conn.mail(
                plan.sender,
                size=size,
                smtputf8=utf8,
                envid=plan.envid if plan.dsn else None,
                ret="HDRS" if plan.dsn else None,
            )
        except ValueError as error:
            self.found(finding("refused", host=self.host, command="MAIL", reply=str(error)))
            return
        response, started = await self.command("MAIL", mail_line)
        if not response.reply.is_positive:
            self.refused("MAIL", started, response.reply)
            return
        self.step("MAIL", "pass", started, str(response.reply))
        notify = ("SUCCESS", "FAILURE") if plan.dsn else ()
        orcpt = plan.recipient if plan.dsn and "@" in plan.recipient else None
        try:
            rcpt_line = conn.rcpt(plan.recipient, notify=notify, orcpt=orcpt)
        except ValueError as error:
            self.found(finding("refused", host=self.host, command="RCPT", reply=str(error)))
            await self.reset()
            return
        response, started = await self.command("RCPT", rcpt_line)
        if not response.reply.is_positive:
            self.refused("RCPT", started, response.reply)
            await self.reset()
            return
        self.step("RCPT", "pass", started, str(response.reply))
        if plan.message is None:
            await self.reset()
            return
        await self.data(plan.message)

    def refused(self, command: str, started: float, reply: Reply) -> None:
        item = reply_finding(
            command, reply, host=self.host, rcpt=self.plan.recipient, sender=self.plan.sender
        )
        self.found(item)
        self.step(command, "fail", started, str(reply))

    async def data(self, message: bytes) -> None:
        conn = self.conn
        response, started = await self.command("DATA", conn.data())
        if response.reply.code != 354:
            self.refused("DATA", started, response.reply)
            if conn.in_transaction:
                await self.reset()
            return
        self.step("DATA", "pass", started, str(response.reply))
        payload = conn.message_chunk(message) + conn.end_of_data()
        response, started = await self.command("message", payload)
        if not response.reply.is_positive:
            self.refused("message", started, response.reply)
            return
        queued = _QUEUED_AS.search(response.reply.text)
        self.report.queue_id = queued.group(1) if queued else None
        self.step("message", "pass", started, str(response.reply))

    async def reset(self) -> None:
        if not self.conn.in_transaction:
            return
        response, started = await self.command("RSET", self.conn.rset())
        status: StepStatus = "pass" if response.reply.is_positive else "warn"
        self.step("RSET", status, started, str(response.reply))

    def relay_trust(self) -> Finding | None:
        """Why a relay accepted here proves nothing about outside clients, if we know why.

        Authenticated, it relays by design; and when the target is this machine's own
        Hato and our address is in its trusted networks, so it does. A network of every
        address (0.0.0.0/0) trusts the Internet too, so that stays an open relay.
        """
        if self.plan.auth_user is not None:
            return finding("relay-authenticated", host=self.host, user=self.plan.auth_user)
        own, report = self.plan.own_server, self.report
        client = report.client_address
        if own is None or client is None or not own.serves(report.address, report.port, client):
            return None
        if not (report.banner_software or "").startswith("ESMTP Hato "):
            return None  # another server on a port a Hato would use
        network = own.trusting(client)
        if network is None or network.endswith("/0"):
            return None
        return finding(
            "relay-trusted", host=self.host, client=client, network=network, source=own.source
        )

    async def relay_test(self) -> None:
        conn, started = self.conn, self.conv.elapsed()
        local = self.plan.relay_domain or self.report.banner_host or self.host
        trust = self.relay_trust()
        client = self.report.client_address or "this client's address"
        for form, recipient in relay_forms(local):
            response, _ = await self.command("MAIL", conn.mail(self.plan.sender))
            if not response.reply.is_positive:
                self.report.relay_checks.append(
                    RelayCheck(
                        form=form,
                        recipient=recipient,
                        reply=f"MAIL: {response.reply}",
                        verdict="inconclusive",
                    )
                )
                continue
            response, _ = await self.command("RCPT", conn.rcpt(recipient))
            reply = response.reply
            verdict: Literal["open", "trusted", "closed", "inconclusive"] = (
                "closed" if reply.is_permanent else "inconclusive"
            )
            if reply.is_positive:
                verdict = "open" if trust is None else "trusted"
            self.report.relay_checks.append(
                RelayCheck(form=form, recipient=recipient, reply=str(reply), verdict=verdict)
            )
            if verdict == "open":
                self.found(
                    finding("relay-open", host=self.host, rcpt=recipient, form=form, client=client)
                )
            await self.reset()
        self.relay_verdict(started, trust)

    def relay_verdict(self, started: float, trust: Finding | None) -> None:
        checks = self.report.relay_checks
        opened = sum(c.verdict == "open" for c in checks)
        trusted = sum(c.verdict == "trusted" for c in checks)
        if trust is not None and trusted:
            self.found(trust)
        status: StepStatus = (
            "fail" if opened else ("pass" if all(c.verdict == "closed" for c in checks) else "warn")
        )
        if opened:
            detail = f"open to {opened} of {len(checks)} forms"
        elif trusted:
            detail = f"relayed {trusted} of {len(checks)} forms for a trusted client"
        else:
            detail = "closed to every form" if status == "pass" else "some forms inconclusive"
        self.step("relay test", status, started, detail)

    async def quit(self) -> None:
        if not self.conn.can_send(Command.QUIT):
            return
        started = self.conv.elapsed()
        try:
            await self.conv.send(self.conn.quit())
            response = await self.conv.reply()
        except (Closed, ReplyTimeout, Garbled) as error:
            self.step("QUIT", "warn", started, f"no reply to QUIT: {error}")
            return
        status: StepStatus = "pass" if response.reply.code == 221 else "warn"
        self.step("QUIT", status, started, str(response.reply))


def _first_line(reply: Reply) -> str:
    return f"{reply.code} {reply.lines[0]}"


def _when(step: str, detail: str) -> str:
    where = "before the banner" if step == "banner" else f"after {step}"
    return f"{where} ({detail})"
