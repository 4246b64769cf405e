"""Interoperability with OpenDKIM (Debian's opendkim 2.11): what Hato signs, OpenDKIM
verifies, and the other way round; a tampered message fails in both.

OpenDKIM runs in its test mode (``opendkim -x CONF -t FILE,FILE``), once to verify every
message Hato signed and once to sign, asking the tests' DNS server through libunbound
(``ResolverConfiguration`` names an unbound configuration forwarding "." to it).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dkim_test_keys import ed25519_key, publish, rsa_key
from dns_server import DnsServer
from hato.mailauth import MailDns, SigningKey, sign_dkim, verify_dkim

OPENDKIM = "/usr/sbin/opendkim"
TESTMSG = "/usr/sbin/opendkim-testmsg"
if not (os.access(OPENDKIM, os.X_OK) and os.access(TESTMSG, os.X_OK)):
    pytest.skip(
        f"OpenDKIM NOT TESTED: {OPENDKIM} or {TESTMSG} missing (apt-get install opendkim "
        "opendkim-tools)",
        allow_module_level=True,
    )

DOMAIN = "example.com"
MESSAGE = b"""\
From: Alice <alice@example.com>
To: Bob <bob@example.org>
Cc: carol@example.net
Subject: Interoperability
Date: Mon, 01 Jan 2024 12:00:00 +0000
Message-ID: <interop@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Does OpenDKIM agree?
  Trailing spaces and blank lines, for relaxed canonicalization.


""".replace(b"\n", b"\r\n").replace(b"canonicalization.", b"canonicalization.   ")
TAMPER = (b"Does OpenDKIM agree?", b"Does OpenDKIM disagree?")


@dataclass
class Interop:
    dns: DnsServer
    work: Path
    rsa: SigningKey
    ed: SigningKey
    verdicts: dict[str, str]  # file name -> OpenDKIM's dkim= results, in order
    opendkim_signed: bytes  # MESSAGE as OpenDKIM signed it (rsa-sha256, relaxed/relaxed)


def _run(command: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    run = subprocess.run(command, input=stdin, capture_output=True, timeout=60, check=False)
    assert run.returncode == 0, (command, run.stdout, run.stderr)
    return run


def _ar_results(output: str) -> list[list[str]]:
    """The dkim= words of each Authentication-Results OpenDKIM would add, in file order."""
    fields = re.findall(r"hname='Authentication-Results' hvalue='([^']*)'", output)
    return [re.findall(r"dkim=(\w+)", field) for field in fields]


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    work = tmp_path_factory.mktemp("opendkim")
    with DnsServer() as dns:
        rsa, ed = rsa_key(DOMAIN, "hato-rsa"), ed25519_key(DOMAIN, "hato-ed")
        publish(dns, rsa)
        publish(dns, ed)
        (work / "unbound.conf").write_text(
            "server:\n  do-not-query-localhost: no\n"
            f'forward-zone:\n  name: "."\n  forward-addr: {dns.host}@{dns.port}\n'
        )
        (work / "verify.conf").write_text(
            f"Mode v\nSyslog no\nResolverConfiguration {work}/unbound.conf\n"
        )
        files = {
            "rsa.eml": sign_dkim(MESSAGE, [rsa]) + MESSAGE,
            "ed.eml": sign_dkim(MESSAGE, [ed]) + MESSAGE,
            "both.eml": sign_dkim(MESSAGE, [rsa, ed]) + MESSAGE,
        }
        files["tampered.eml"] = files["both.eml"].replace(*TAMPER)
        for name, data in files.items():
            (work / name).write_bytes(data)
        run = _run(
            [
                OPENDKIM,
                "-x",
                str(work / "verify.conf"),
                "-vvv",
                "-t",
                ",".join(str(work / name) for name in files),
            ]
        )
        results = _ar_results(run.stdout.decode(errors="replace"))
        assert len(results) == len(files), run.stdout
        verdicts = {name: " ".join(words) for name, words in zip(files, results, strict=True)}

        key_file = work / "rsa.pem"
        key_file.write_bytes(rsa.private_key)
        key_file.chmod(0o600)
        (work / "unsigned.eml").write_bytes(MESSAGE)
        (work / "sign.conf").write_text(
            f"Mode s\nSyslog no\nDomain {DOMAIN}\nSelector {rsa.selector}\nKeyFile {key_file}\n"
            "SignatureAlgorithm rsa-sha256\nCanonicalization relaxed/relaxed\n"
            # The key sits in a temporary directory under /tmp, which others may write.
            "RequireSafeKeys no\n"
            f"ResolverConfiguration {work}/unbound.conf\n"
        )
        run = _run(
            [OPENDKIM, "-x", str(work / "sign.conf"), "-vvv", "-t", str(work / "unsigned.eml")]
        )
        match = re.search(r"hname='DKIM-Signature' hvalue='([^']*)'", run.stdout.decode())
        assert match, run.stdout
        field = "DKIM-Signature: " + match.group(1).replace("\n", "\r\n")
        yield Interop(dns, work, rsa, ed, verdicts, field.encode() + b"\r\n" + MESSAGE)


def test_opendkim_verifies_what_hato_signs(interop: Interop) -> None:
    assert interop.verdicts["rsa.eml"] == "pass"
    # OpenDKIM 2.11 verifies Ed25519 (RFC 8463) when its OpenSSL does.
    assert interop.verdicts["ed.eml"] == "pass"
    assert interop.verdicts["both.eml"] == "pass pass"


def test_opendkim_fails_what_was_tampered_with(interop: Interop) -> None:
    assert interop.verdicts["tampered.eml"] == "fail fail"


def test_hato_verifies_what_opendkim_signs(interop: Interop) -> None:
    dns = MailDns([interop.dns.nameserver], timeout=2.0)
    [result] = verify_dkim(dns, interop.opendkim_signed)
    assert (result.result, result.domain, result.algorithm) == ("pass", DOMAIN, "rsa-sha256")
    [tampered] = verify_dkim(dns, interop.opendkim_signed.replace(*TAMPER))
    assert tampered.result == "fail"


def test_hato_refuses_opendkim_testmsg_rsa_sha1(interop: Interop) -> None:
    # opendkim-testmsg signs with the library's default, rsa-sha1, which RFC 8301 retired.
    run = _run(
        [
            TESTMSG,
            "-C",
            "-d",
            DOMAIN,
            "-s",
            interop.rsa.selector,
            "-k",
            str(interop.work / "rsa.pem"),
        ],
        MESSAGE,
    )
    assert b"a=rsa-sha1" in run.stdout
    dns = MailDns([interop.dns.nameserver], timeout=2.0)
    [result] = verify_dkim(dns, run.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert result.result == "permerror" and "rsa-sha1" in result.reason
