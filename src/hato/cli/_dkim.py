"""``hato dkim``: the DKIM keys of local domains, their DNS records, and key rotation.

Keys live under ``DATA/dkim/``; a running ``hato serve`` sees every change on the next
message it signs. Rotation is three steps, so that mail never goes out signed with a key
nobody can look up: ``rotate`` makes the next key (pending) and prints its record, the
administrator publishes it, ``switch`` checks DNS and makes it the one signed with; the
old key stays published for ``dkim.retire_after``. Malformed input exits with 2, a refused
change or a key whose record does not match with 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ..accounts import ACCOUNTS_FILE, AccountError, AccountStore, normalize_domain
from ..config import Settings
from ..mailauth import (
    DkimKey,
    DkimKeyError,
    DkimKeys,
    InvalidKeyInput,
    KeyCheck,
    MailDns,
    check_published,
    dns_record,
    domain_key_algorithms,
)
from ._common import config_options, data_settings, override_option

__all__ = ["DKIM_DIR", "dkim", "make_domain_keys", "print_record", "store_for"]

DKIM_DIR = "dkim"
ALGORITHM_CHOICE = click.Choice(["rsa-sha256", "ed25519-sha256"])
# The states whose record must be in DNS: a verifier may look any of them up.
PUBLISHED = ("pending", "active", "retiring")
CHECK_WORDS = {
    "match": "published, and matches the key",
    "missing": "NOT PUBLISHED",
    "mismatch": "DOES NOT MATCH",
    "temperror": "COULD NOT BE CHECKED (DNS failure; try again)",
}


@contextmanager
def reported() -> Iterator[None]:
    """The key store's refusals as exit codes: 2 for bad input, 1 for the rest."""
    try:
        yield
    except (InvalidKeyInput, AccountError) as error:
        raise click.UsageError(str(error), click.get_current_context(silent=True)) from None
    except DkimKeyError as error:
        raise click.ClickException(str(error)) from None


def store_for(settings: Settings) -> DkimKeys:
    return DkimKeys(settings.server.data_dir / DKIM_DIR, retire_after=settings.dkim.retire_after)


def _local(settings: Settings, name: str, keys: DkimKeys, *, or_known: bool = False) -> str:
    """``name`` normalized, refused unless it is a local domain (or, with ``or_known``,
    a domain that still has keys: they can be listed, checked and removed)."""
    with reported():
        wanted = normalize_domain(name)
        if or_known and wanted in keys.domains():
            return wanted
    if wanted in settings.server.local_domains:
        return wanted
    path = settings.server.data_dir / ACCOUNTS_FILE
    if path.exists():
        with (
            reported(),
            AccountStore(path, config_domains=settings.server.local_domains) as store,
        ):
            if store.is_local_domain(wanted):
                return wanted
    raise click.ClickException(
        f"{wanted} is not a local domain; add it with hato domain add {wanted}"
        " (or to server.local_domains)"
    )


def _dns(settings: Settings) -> MailDns:
    return MailDns(settings.dns.nameservers, settings.dns.timeout)


def print_record(key: DkimKey) -> None:
    """The TXT record of ``key`` as it must be published: name, strings, zone-file line."""
    record = dns_record(key)
    bits = f", {key.bits} bits" if key.algorithm == "rsa-sha256" else ""
    click.echo(f"; {key.domain}: {key.algorithm}{bits}, {key.state}, selector {key.selector}")
    click.echo(f"name:   {record.name}")
    click.echo("type:   TXT")
    for at, piece in enumerate(record.strings):
        click.echo(f'{"value:" if at == 0 else "":<7} "{piece}"')
    click.echo(f"zone:   {record.zone_line}")


def make_domain_keys(settings: Settings, domain: str, *, ed25519: bool = False) -> None:
    """The keys of a domain just added (``hato domain add``): RSA, and ed25519 if asked;
    a domain that already has an active key of an algorithm (added before, removed, added
    again) keeps it."""
    keys = store_for(settings)
    with reported():
        for algorithm in domain_key_algorithms(ed25519=ed25519):
            key, made = keys.ensure_active(domain, algorithm)
            done = "made the" if made else "kept the existing"
            click.echo(f"{done} DKIM key {key.selector} ({algorithm}); publish:")
            print_record(key)


def _when(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))


@click.group()
def dkim() -> None:
    """DKIM keys of local domains: make, publish, check and rotate them."""


@dkim.command("keygen")
@config_options
@click.argument("domain")
@click.option("--selector", help="The selector (default: hatoYYYYMM, hatoYYYYMMe for ed25519).")
@click.option("--algorithm", type=ALGORITHM_CHOICE, default="rsa-sha256", show_default=True)
@click.option("--bits", type=int, default=2048, show_default=True, help="RSA key size.")
def dkim_keygen(
    config_path: Path | None,
    data_dir: Path | None,
    domain: str,
    selector: str | None,
    algorithm: str,
    bits: int,
) -> None:
    """Make the key DOMAIN signs with, and print the DNS record to publish."""
    settings = data_settings(config_path, data_dir)
    keys = store_for(settings)
    wanted = _local(settings, domain, keys)
    with reported():
        made = keys.generate(wanted, selector=selector, algorithm=algorithm, bits=bits)
        click.echo(f"made the {algorithm} key {made.selector} for {made.domain}; publish:")
        print_record(made)


@dkim.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array of keys.")
def dkim_list(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List the keys of every domain, with their state and last DNS check."""
    settings = data_settings(config_path, data_dir)
    with reported():
        found = store_for(settings).keys()
    if as_json:
        click.echo(json.dumps([k.to_json() for k in found], indent=2))
        return
    rows = []
    for key in found:
        state = key.state
        if key.state == "retiring":
            state += f" until {_when(key.retire_at)}"
        checked = key.check_state or "not checked"
        if key.check_time is not None:
            checked += f" ({_when(key.check_time)})"
        rows.append((key.domain, key.selector, key.algorithm, str(key.bits), state, checked))
    heading = ("DOMAIN", "SELECTOR", "ALGORITHM", "BITS", "STATE", "DNS")
    widths = [max(len(row[at]) for row in [heading, *rows]) for at in range(5)]
    for row in [heading, *rows]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True))
            + f"  {row[5]}"
        )


@dkim.command("dns")
@config_options
@click.argument("domain")
def dkim_dns(config_path: Path | None, data_dir: Path | None, domain: str) -> None:
    """Print the TXT records DOMAIN must publish (one per key that is not retired)."""
    settings = data_settings(config_path, data_dir)
    keys = store_for(settings)
    wanted = _local(settings, domain, keys, or_known=True)
    with reported():
        shown = [k for k in keys.keys(wanted) if k.state in PUBLISHED]
        if not shown:
            raise DkimKeyError(f"{wanted} has no keys; make one with hato dkim keygen {wanted}")
        for at, key in enumerate(shown):
            if at:
                click.echo()
            print_record(key)


@dkim.command("rotate")
@config_options
@click.argument("domain")
@click.option("--algorithm", type=ALGORITHM_CHOICE, default="rsa-sha256", show_default=True)
def dkim_rotate(
    config_path: Path | None, data_dir: Path | None, domain: str, algorithm: str
) -> None:
    """Make the next key of DOMAIN (pending) and print the record to publish."""
    settings = data_settings(config_path, data_dir)
    keys = store_for(settings)
    wanted = _local(settings, domain, keys)
    with reported():
        made = keys.rotate(wanted, algorithm=algorithm)
        click.echo(f"made the pending {algorithm} key {made.selector} for {wanted}; publish:")
        print_record(made)
    option = "" if algorithm == "rsa-sha256" else f" --algorithm {algorithm}"
    click.echo(
        f"next: once the record is in DNS, hato dkim switch {wanted}{option} makes it the key"
        f" mail is signed with; the current key stays published for"
        f" {settings.dkim.retire_after / 86400:g} day(s) after that"
    )


@dkim.command("switch")
@config_options
@click.argument("domain")
@click.option("--algorithm", type=ALGORITHM_CHOICE, default="rsa-sha256", show_default=True)
@click.option("--force", is_flag=True, help="Switch even if DNS does not publish the new key.")
@override_option
def dkim_switch(
    config_path: Path | None,
    data_dir: Path | None,
    domain: str,
    algorithm: str,
    force: bool,
    settings_overrides: tuple[str, ...],
) -> None:
    """Sign DOMAIN's mail with its pending key, once DNS publishes it."""
    settings = data_settings(config_path, data_dir, settings_overrides)
    keys = store_for(settings)
    wanted = _local(settings, domain, keys)
    with reported():
        before = [k for k in keys.keys(wanted) if k.state == "active" and k.algorithm == algorithm]
        new = keys.switch(wanted, _dns(settings), algorithm=algorithm, force=force)
    if new.check_state != "match":
        click.echo(f"warning: switched without a matching record: {new.check_detail}", err=True)
    click.echo(f"{wanted} now signs {algorithm} with {new.selector}")
    for old in before:
        click.echo(
            f"{old.selector} is retiring: keep its record published until"
            f" {_when(keys.key(wanted, old.selector).retire_at)}"
        )


@dkim.command("check")
@config_options
@click.argument("domain", required=False)
@override_option
def dkim_check(
    config_path: Path | None,
    data_dir: Path | None,
    domain: str | None,
    settings_overrides: tuple[str, ...],
) -> None:
    """Look up each key's record in DNS and say whether it matches; exit 1 unless all do."""
    settings = data_settings(config_path, data_dir, settings_overrides)
    keys = store_for(settings)
    wanted = None if domain is None else _local(settings, domain, keys, or_known=True)
    with reported():
        shown = [k for k in keys.keys(wanted) if k.state in PUBLISHED]
        if not shown:
            where = wanted or "any domain"
            raise DkimKeyError(f"no keys for {where}; make one with hato dkim keygen DOMAIN")
        dns = _dns(settings)
        failed = 0
        for key in shown:
            check: KeyCheck = check_published(dns, key)
            keys.record_check(key.domain, key.selector, check)
            words = CHECK_WORDS[check.state]
            click.echo(f"{key.record_name} ({key.algorithm}, {key.state}): {words}")
            if check.state != "match":
                failed += 1
                click.echo(f"  {check.detail}")
                if check.state == "missing" or check.state == "mismatch":
                    click.echo(f"  publish what hato dkim dns {key.domain} prints")
                if check.state == "mismatch" and key.state == "active":
                    click.echo(
                        "  mail is not signed with this key until its record matches"
                        " (dkim.sign_contradicted)"
                    )
    if failed:
        raise SystemExit(1)


@dkim.command("remove")
@config_options
@click.argument("domain")
@click.argument("selector")
def dkim_remove(
    config_path: Path | None, data_dir: Path | None, domain: str, selector: str
) -> None:
    """Delete the key SELECTOR of DOMAIN (its record may then be taken out of DNS)."""
    settings = data_settings(config_path, data_dir)
    keys = store_for(settings)
    wanted = _local(settings, domain, keys, or_known=True)
    with reported():
        removed = keys.remove(wanted, selector)
    click.echo(f"removed the {removed.algorithm} key {removed.selector} of {wanted}")
    if removed.state == "active":
        click.echo(
            f"warning: it was the active key: mail from {wanted} is no longer signed with"
            f" {removed.algorithm}",
            err=True,
        )
