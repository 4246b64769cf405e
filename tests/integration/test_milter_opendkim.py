"""OpenDKIM (Debian's opendkim 2.11) as a milter: a private daemon in signing mode
(``Mode s``, ``Socket inet:PORT@127.0.0.1``, a test key) asked by a real ``hato serve``.
The message Hato stores carries OpenDKIM's signature, and Hato's own DKIM verifier
(``hato.mailauth.verify_dkim``) passes it against the key published in the tests' DNS
server; a tampered copy fails."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dkim_test_keys import publish, rsa_key
from dns_server import DnsServer
from hato.mailauth import MailDns, verify_dkim

if TYPE_CHECKING:
    from conftest import HatoProcess

OPENDKIM = "/usr/sbin/opendkim"
if not os.access(OPENDKIM, os.X_OK):
    pytest.skip(
        f"OpenDKIM milter NOT TESTED: {OPENDKIM} missing (apt-get install opendkim)",
        allow_module_level=True,
    )

DOMAIN = "example.com"
SELECTOR = "milter"
START_TIMEOUT = 20.0
MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@mx.test.example>\r\n"
    b"Subject: Signed by a milter\r\n"
    b"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
    b"Message-ID: <milter-signed@example.com>\r\n"
    b"X-Folded: a field\r\n"
    b"\tfolded on two lines\r\n"
    b"\r\n"
    b"Signed as it passes.\r\n"
    b"  Trailing spaces and a blank line, for the simple body canonicalization.   \r\n"
    b"\r\n"
    b"The end.\r\n"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture(scope="module")
def opendkim(dns: DnsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A running OpenDKIM signing for DOMAIN; its port."""
    work = tmp_path_factory.mktemp("opendkim-milter")
    key = rsa_key(DOMAIN, SELECTOR)
    publish(dns, key)
    key_file = work / "key.pem"
    key_file.write_bytes(key.private_key)
    key_file.chmod(0o600)
    port = _free_port()
    config = work / "opendkim.conf"
    config.write_text(
        f"Mode s\nSyslog no\nBackground no\nDomain {DOMAIN}\nSelector {SELECTOR}\n"
        f"KeyFile {key_file}\nSocket inet:{port}@127.0.0.1\nPidFile {work}/opendkim.pid\n"
        "SignatureAlgorithm rsa-sha256\nCanonicalization simple/simple\n"
        "InternalHosts 127.0.0.0/8\n"
        # The key sits in a temporary directory under /tmp, which others may write.
        "RequireSafeKeys no\n"
    )
    with open(work / "opendkim.out", "wb") as output:
        process = subprocess.Popen(
            [OPENDKIM, "-f", "-x", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_listening(port, process, work)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_listening(port: int, process: subprocess.Popen[bytes], work: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError((work / "opendkim.out").read_text(errors="replace"))
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.05)
    raise AssertionError("opendkim did not listen in time")


@pytest.fixture(scope="module")
def hato(opendkim: int, module_hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    return module_hato_factory(
        "opendkim",
        f'pipeline.milters=[{{ name = "opendkim", socket = "inet:127.0.0.1:{opendkim}" }}]',
    )


def test_opendkim_signs_what_hato_stores_and_hato_verifies_it(
    hato: HatoProcess, dns: DnsServer
) -> None:
    with smtplib.SMTP(hato.host, hato.port, timeout=30) as client:
        client.ehlo("client.example")
        client.mail("alice@example.com")
        client.rcpt("bob@mx.test.example")
        code, text = client.data(MESSAGE)
    assert code == 250, text
    queue_id = text.decode().rsplit(" ", 1)[-1]
    _, stored = hato.message(queue_id)
    assert stored.startswith(b"DKIM-Signature: "), stored[:300]
    assert stored.endswith(MESSAGE.partition(b"\r\n\r\n")[2])
    verifier = MailDns([dns.nameserver], timeout=2.0)
    [result] = verify_dkim(verifier, stored)
    assert (result.result, result.domain, result.algorithm) == ("pass", DOMAIN, "rsa-sha256"), (
        result
    )
    [tampered] = verify_dkim(verifier, stored.replace(b"The end.", b"The End."))
    assert tampered.result == "fail"
    event = hato.wait_for_event("milter_action", milter="opendkim", queue_id=queue_id)
    assert event["action"] in ("insheader", "addheader") and "DKIM-Signature" in event["detail"]
