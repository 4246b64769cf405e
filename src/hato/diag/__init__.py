"""Diagnostics (layer 4): ``hato test TARGET``, the telnet-to-port-25 procedure as one command.

What it promises:

- It looks up what a sender would (MX records by preference, each host's addresses, null
  MX, implicit MX, NXDOMAIN) through the relay's own resolver and MX selection, and talks
  to the servers as a sender would, through the same sans-I/O client engine.
- Every step is timed and kept in a ``C:``/``S:`` transcript (credentials masked); every
  failure becomes a ``Finding``: what happened, what it means, what to check next.
- Nothing waits unbounded: the connection, each reply, the TLS handshake and each DNS
  lookup have a timeout, and waiting for a delivery report has its own.
- The session never verifies the certificate (so the conversation goes on and the facts
  can be shown); it says what a verifying client would refuse.
- ``--relay-test`` never sends DATA: the open-relay forms stop at RCPT and are RSET. A
  relay accepted is an open relay unless we know better: AUTH was used, or the target is
  this machine's own Hato (``Plan.own_server``) and it trusts our address; from any other
  server it reads "an open relay, unless it trusts this client".
- The result is plain data (``Report``): the text report and ``--json`` are two views of it.
- ``--receive`` makes a test address (``ProbeStore``) whose mail the server analyses and
  discards (``InboundProbe``, a message filter): what the sending system's session, DNS,
  authentication and header look like from here.
- ``--dns`` (a domain's SPF, DMARC, DKIM, MTA-STS and TLS-RPT records) and ``--self``
  (this server's reverse DNS, blocklists, SPF, DKIM, DMARC and certificate) only read DNS
  and files: a ``StandingReport`` of checks, each with findings from the same catalog.
"""

from ._loop import ReportMailbox, find_report, wait_for_report
from ._message import new_envid, test_message
from ._probe import RELAY_DOMAIN, RELAY_USER, Plan, StepListener, probe, relay_forms
from ._probe_inbound import InboundProbe, analyse, render_analysis, session_timings
from ._probe_store import (
    LIFETIME,
    PROBES_DIR,
    ProbeError,
    ProbeRecord,
    ProbeStore,
    split_probe,
)
from ._render import render, render_standing
from ._report import (
    Certificate,
    Check,
    DnsReport,
    Extension,
    Finding,
    HostReport,
    LoopOutcome,
    MxHost,
    RelayCheck,
    Report,
    StandingReport,
    Step,
    TranscriptEntry,
)
from ._run import Options, run
from ._self import SelfPlan, dnsbl_zones, outgoing_address
from ._standing import standing_dns, standing_self
from ._target import Target, TargetError, parse_server, parse_target
from ._tls import certificate_facts, name_matches
from ._trust import OwnServer

__all__ = [
    "LIFETIME",
    "PROBES_DIR",
    "RELAY_DOMAIN",
    "RELAY_USER",
    "Certificate",
    "Check",
    "DnsReport",
    "Extension",
    "Finding",
    "HostReport",
    "InboundProbe",
    "LoopOutcome",
    "MxHost",
    "Options",
    "OwnServer",
    "Plan",
    "ProbeError",
    "ProbeRecord",
    "ProbeStore",
    "RelayCheck",
    "Report",
    "ReportMailbox",
    "SelfPlan",
    "StandingReport",
    "Step",
    "StepListener",
    "Target",
    "TargetError",
    "TranscriptEntry",
    "analyse",
    "certificate_facts",
    "dnsbl_zones",
    "find_report",
    "name_matches",
    "new_envid",
    "outgoing_address",
    "parse_server",
    "parse_target",
    "probe",
    "relay_forms",
    "render",
    "render_analysis",
    "render_standing",
    "run",
    "session_timings",
    "split_probe",
    "standing_dns",
    "standing_self",
    "test_message",
    "wait_for_report",
]
