"""Running ``hato test`` as an administrator would, for the test_diag_* files: the installed
command in a subprocess, its exit status and report, and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HATO = Path(sys.executable).with_name("hato")


def hato(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``hato ARGS``; a traceback on stderr fails the test."""
    done = subprocess.run(
        [str(HATO), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        input=stdin,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def run_test(
    *args: str, timeout: float = 10, cwd: Path | None = None, stdin: str | None = None
) -> tuple[int, dict[str, Any], str]:
    """Run ``hato test ARGS --json --timeout TIMEOUT``: exit status, the report, stderr."""
    done = hato("test", *args, "--json", "--timeout", f"{timeout:g}", cwd=cwd, stdin=stdin)
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


def codes(report: dict[str, Any]) -> list[str]:
    """Every finding's code, in the report's order: DNS, each server, then the rest."""
    found = [f["code"] for f in report["dns"]["findings"]] if report["dns"] else []
    for host in report["hosts"]:
        found += [f["code"] for f in host["findings"]]
    return found + [f["code"] for f in report["findings"]]
