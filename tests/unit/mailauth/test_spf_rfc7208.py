"""The RFC 7208 test suite (openspf.org, release 2014.04), as pyspf's source distribution
ships it: wherever pyspf itself gives one of a case's expected results, Hato's
``check_spf`` (the same library behind Hato's resolver interface) gives that result too.

Each case's ``zonedata`` stands in for DNS twice: answered to pyspf directly in the form
its own lookup function returns, and through a ``TxtResolver`` for ``check_spf`` in the
form ``MailDns`` returns (CNAMEs followed, strings joined, zone-file text). The sdist is
fetched once with pip into a cache beside the virtual environment.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import spf
import yaml

from hato.mailauth import TemporaryDnsError, check_spf

SUITE = "test/rfc7208-tests.yml"
CNAME_DEPTH = 10


def _suite_file() -> Path:
    version = importlib.metadata.version("pyspf")
    cache = Path(sys.prefix) / "hato-test-cache" / f"pyspf-{version}"
    target = cache / "rfc7208-tests.yml"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--no-binary", ":all:", f"pyspf=={version}", "-d", str(cache)]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"RFC 7208 SUITE NOT RUN: could not fetch the pyspf {version} sdist: {error}")
    archives = sorted(cache.glob("pyspf-*.tar.gz"))
    if run.returncode != 0 or not archives:
        pytest.skip(
            f"RFC 7208 SUITE NOT RUN: pip could not fetch the pyspf {version} sdist:"
            f" {run.stderr.strip()[-500:]}"
        )
    with tarfile.open(archives[0]) as archive:
        member = next((m for m in archive.getmembers() if m.name.endswith(SUITE)), None)
        source = archive.extractfile(member) if member is not None else None
        if source is None:
            pytest.skip(f"RFC 7208 SUITE NOT RUN: {archives[0].name} has no {SUITE}")
        target.write_bytes(source.read())
    return target


class Zone:
    """A case's zonedata: per name, its entries in order. ``SPF`` records also stand as
    TXT records at a name that has no TXT entry of its own (``TXT: NONE`` is one);
    ``TIMEOUT`` makes a question for a type not answered before it time out."""

    def __init__(self, zonedata: dict[str, list[Any]]) -> None:
        self.entries: dict[str, list[tuple[str, Any]]] = {}
        for name, records in zonedata.items():
            entries: list[tuple[str, Any]] = []
            has_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
            for record in records:
                if record == "TIMEOUT":
                    entries.append(("TIMEOUT", None))
                    continue
                for rtype, value in record.items():
                    if value == "NONE":
                        continue
                    if rtype == "SPF":
                        if not has_txt:
                            entries.append(("TXT", value))
                        continue
                    entries.append((rtype, value))
            self.entries[_key(name)] = entries

    def at(self, name: str, rtype: str) -> list[Any]:
        found = []
        for entry_type, value in self.entries.get(_key(name), []):
            if entry_type == "TIMEOUT":
                if not found:
                    raise TemporaryDnsError(f"{name} {rtype}: timeout")
                break
            if entry_type == rtype:
                found.append(value)
        return found


def _key(name: str) -> str:
    return name.lower().rstrip(".")


def _strings(value: Any) -> tuple[bytes, ...]:
    parts = [value] if isinstance(value, str) else list(value)
    return tuple(part.encode() for part in parts)


def library_lookup(zone: Zone) -> Any:
    """pyspf's own DNSLookup contract over the zone: the answer section, CNAMEs included."""

    def lookup(name: str, qtype: str, strict: object = True, timeout: object = None) -> Any:
        try:
            answers = []
            owner = name
            for _ in range(2):  # the answer holds the CNAME and its target's records
                for target in zone.at(owner, "CNAME"):
                    answers.append(((owner, "CNAME"), _key(target)))
                for value in zone.at(owner, qtype):
                    answers.append(((owner, qtype), _library_value(qtype, value)))
                cnames = zone.at(owner, "CNAME")
                if not cnames or answers[-1][0][1] == qtype:
                    break
                owner = _key(cnames[0])
        except TemporaryDnsError as error:
            raise spf.TempError(str(error)) from None
        return answers

    return lookup


def _library_value(qtype: str, value: Any) -> Any:
    if qtype == "MX":
        return (int(value[0]), value[1])
    if qtype == "TXT":
        return _strings(value)
    return value


class ZoneDns:
    """The zone as a recursive resolver answers it, behind the ``TxtResolver`` interface:
    CNAMEs followed, a TXT record's strings joined, other records as zone-file text."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def txt(self, name: str) -> list[bytes]:
        return [b"".join(_strings(value)) for value in self._follow(name, "TXT")]

    def query(self, name: str, rtype: str) -> list[str]:
        values = self._follow(name, rtype)
        if rtype == "MX":
            return [f"{value[0]} {value[1] or '.'}{'.' if value[1] else ''}" for value in values]
        if rtype == "PTR":
            return [_key(value) + "." for value in values]
        return [str(value) for value in values]

    def _follow(self, name: str, rtype: str) -> list[Any]:
        seen: set[str] = set()
        owner = _key(name)
        for _ in range(CNAME_DEPTH):
            found = self.zone.at(owner, rtype)
            cnames = self.zone.at(owner, "CNAME")
            if found or not cnames:
                return found
            seen.add(owner)
            owner = _key(cnames[0])
            if owner in seen:
                raise TemporaryDnsError(f"{name}: CNAME loop")
        raise TemporaryDnsError(f"{name}: CNAME chain too long")


def cases() -> Iterator[tuple[str, dict[str, Any], Zone]]:
    with _suite_file().open("rb") as stream:
        for scenario in yaml.safe_load_all(stream):
            zone = Zone(scenario.get("zonedata") or {})
            for name, case in scenario["tests"].items():
                yield name, case, zone


def test_rfc7208_suite_through_hato(capsys: pytest.CaptureFixture[str]) -> None:
    hook = spf.DNSLookup
    library_passes: list[str] = []
    mismatches: list[str] = []
    total = 0
    for name, case, zone in cases():
        total += 1
        expected = case["result"] if isinstance(case["result"], list) else [case["result"]]
        sender, helo, ip = str(case["mailfrom"]), str(case["helo"]), str(case["host"])
        spf.DNSLookup = library_lookup(zone)
        try:
            query = spf.query(ip, sender, helo, strict=case.get("strict", True))
            library = query.check()[0]
        finally:
            spf.DNSLookup = hook
        if library not in expected:
            continue
        library_passes.append(name)
        ours = check_spf(ZoneDns(zone), ip, sender, helo)
        if ours.result != library:
            mismatches.append(f"{name}: pyspf {library}, Hato {ours.result} ({ours.explanation})")
    summary = (
        f"RFC 7208 suite: pyspf passes {len(library_passes)} of {total} cases;"
        f" Hato's check_spf matches {len(library_passes) - len(mismatches)}"
        f" of those {len(library_passes)}"
    )
    with capsys.disabled():
        print("\n" + summary)
    assert total > 150, summary  # the whole suite was read
    assert len(library_passes) > total * 0.9, summary
    assert not mismatches, summary + "\n" + "\n".join(mismatches)
