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
"""

from ._loop import ReportMailbox, find_report, wait_for_report
from ._message import new_envid, test_message
from ._probe import RELAY_DOMAIN, RELAY_USER, Plan, probe, relay_forms
from ._render import render
from ._report import (
    Certificate,
    DnsReport,
    Extension,
    Finding,
    HostReport,
    LoopOutcome,
    MxHost,
    RelayCheck,
    Report,
    Step,
    TranscriptEntry,
)
from ._run import Options, run
from ._target import Target, TargetError, parse_server, parse_target
from ._tls import certificate_facts, name_matches
from ._trust import OwnServer

__all__ = [
    "RELAY_DOMAIN",
    "RELAY_USER",
    "Certificate",
    "DnsReport",
    "Extension",
    "Finding",
    "HostReport",
    "LoopOutcome",
    "MxHost",
    "Options",
    "OwnServer",
    "Plan",
    "RelayCheck",
    "Report",
    "ReportMailbox",
    "Step",
    "Target",
    "TargetError",
    "TranscriptEntry",
    "certificate_facts",
    "find_report",
    "name_matches",
    "new_envid",
    "parse_server",
    "parse_target",
    "probe",
    "relay_forms",
    "render",
    "run",
    "test_message",
    "wait_for_report",
]
