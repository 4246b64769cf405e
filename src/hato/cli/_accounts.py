"""``hato domain|user|alias``: manage the account store, in the spirit of Postfix's admin tools.

Changes are committed before the command exits, and a running ``hato serve`` sees them on
its next lookup. Malformed input exits with 2, a refused change (a user that does not
exist, a domain that still has users) with 1; both explain themselves on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ..accounts import (
    ACCOUNTS_FILE,
    AccountAdmin,
    AccountError,
    AccountStore,
    Alias,
    Change,
    InvalidInput,
    User,
    display_domain,
    format_size,
    named_domain,
    normalize_domain,
    parse_address,
    parse_size,
)
from ..config import Settings
from ..routing import ALIAS_LOOP, LocalRouter, Unknown, reaches, shadowing_alias
from ._common import config_options, data_settings

__all__ = ["alias", "domain", "user"]


def _size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    try:
        return None if value is None else parse_size(value)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@contextmanager
def _reported() -> Iterator[None]:
    """Turn the store's refusals into exit codes: 2 for bad input, 1 for the rest."""
    try:
        yield
    except InvalidInput as exc:
        raise click.UsageError(str(exc), click.get_current_context(silent=True)) from None
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


def _open(settings: Settings) -> AccountStore:
    """The store in the data directory, created if missing."""
    with _reported():
        return AccountStore(
            settings.server.data_dir / ACCOUNTS_FILE,
            case_sensitive=settings.accounts.case_sensitive_local_parts,
            config_domains=settings.server.local_domains,
        )


@contextmanager
def _existing(settings: Settings) -> Iterator[AccountStore | None]:
    """The store, or None if there is none yet: listing never creates a data directory."""
    if not (settings.server.data_dir / ACCOUNTS_FILE).exists():
        yield None
        return
    with _open(settings) as store, _reported():
        yield store


def _router(settings: Settings, store: AccountStore) -> LocalRouter:
    accounts = settings.accounts
    with _reported():
        return LocalRouter(
            store,
            config_domains=settings.server.local_domains,
            hostname=settings.server.hostname,
            delimiter=accounts.recipient_delimiter,
            case_sensitive=accounts.case_sensitive_local_parts,
            postmaster=accounts.postmaster,
        )


def _admin(settings: Settings, store: AccountStore) -> AccountAdmin:
    """The changes the API makes too, with the same rules and warnings."""
    router = _router(settings, store)
    return AccountAdmin(
        store,
        config_domains=settings.server.local_domains,
        usage=_mailbox_usage(settings),
        shadowing=lambda added: shadowing_alias(router, store, added),
    )


def _mailbox_usage(settings: Settings) -> Callable[[str, str, int | None], int]:
    """What a mailbox holds, counted now if its maildirsize is missing or doubtful."""

    def usage(domain: str, local_part: str, quota: int | None) -> int:
        from ..delivery import MaildirAgent  # only when a quota is set

        agent = MaildirAgent(
            settings.server.data_dir / "mailboxes", hostname=settings.server.hostname
        )
        agent.usage(domain, local_part, quota)
        agent.wait_usage()
        return agent.usage(domain, local_part, quota).bytes

    return usage


def _report(change: Change) -> None:
    click.echo(change.done)
    for text in change.warnings:
        _warn(text)


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


_named = named_domain


# --- domain ----------------------------------------------------------------------------------


@click.group()
def domain() -> None:
    """Manage local domains (beside those in server.local_domains)."""


@domain.command("add")
@config_options
@click.argument("name")
@click.option("--no-dkim", is_flag=True, help="Make no DKIM key (hato dkim keygen can, later).")
@click.option("--ed25519", is_flag=True, help="Make an ed25519 DKIM key beside the RSA one.")
def domain_add(
    config_path: Path | None, data_dir: Path | None, name: str, no_dkim: bool, ed25519: bool
) -> None:
    """Make NAME a local domain, so that users and aliases can be added to it, and make
    the RSA (2048 bits) DKIM key its mail is signed with."""
    settings = data_settings(config_path, data_dir)
    store = _open(settings)
    with store, _reported():
        change = _admin(settings, store).add_domain(name)
    _report(change)
    if not no_dkim and change.domain is not None:
        from ._dkim import make_domain_keys  # mail authentication, only when a key is made

        make_domain_keys(settings, change.domain, ed25519=ed25519)


@domain.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array of domains.")
def domain_list(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List local domains: those of the configuration (marked) and of the store."""
    settings = data_settings(config_path, data_dir)
    configured = settings.server.local_domains
    rows = []
    with _existing(settings) as store:
        stored = () if store is None else store.domains()
        for name in sorted({*configured, *stored}):
            users, aliases = (0, 0) if store is None else store.counts(name)
            rows.append(
                {
                    "domain": name,
                    "unicode": display_domain(name),
                    "config": name in configured,
                    "store": name in stored,
                    "users": users,
                    "aliases": aliases,
                }
            )
    if as_json:
        _echo_json(rows)
        return
    width = max([len(_named(str(r["domain"]))) for r in rows] + [6])
    click.echo(f"{'DOMAIN':<{width}}  {'USERS':>5}  {'ALIASES':>7}  SOURCE")
    for row in rows:
        source = ", ".join(s for s in ("config", "store") if row[s])
        name = _named(str(row["domain"]))
        click.echo(f"{name:<{width}}  {row['users']:>5}  {row['aliases']:>7}  {source}")


@domain.command("remove")
@config_options
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove the domain's users and aliases with it.")
def domain_remove(config_path: Path | None, data_dir: Path | None, name: str, force: bool) -> None:
    """Remove the local domain NAME; refused while it has users or aliases, unless --force."""
    settings = data_settings(config_path, data_dir)
    store = _open(settings)
    where = str(config_path or "the built-in defaults")
    with store, _reported():
        change = _admin(settings, store).remove_domain(name, force=force, where=where)
    click.echo(change.done)


# --- user ------------------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Manage users (mailboxes) and their passwords."""


def _read_password_line() -> str:
    line = sys.stdin.readline()
    if not line:
        raise click.UsageError("--password-stdin: standard input is empty")
    # Only the line end goes: spaces may be part of the password.
    return line.removesuffix("\n").removesuffix("\r")


@user.command("add")
@config_options
@click.argument("address")
@click.option(
    "--password", "password", metavar="PW", help="Password (visible to ps; prefer stdin)."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@click.option(
    "--quota",
    metavar="SIZE",
    callback=_size_option,
    help="Mailbox quota, e.g. 500M or 2G (default: none).",
)
def user_add(
    config_path: Path | None,
    data_dir: Path | None,
    address: str,
    password: str | None,
    password_stdin: bool,
    quota: int | None,
) -> None:
    """Add the mailbox ADDRESS. Without a password it receives mail but cannot log in."""
    if password is not None and password_stdin:
        raise click.UsageError("give either --password or --password-stdin, not both")
    settings = data_settings(config_path, data_dir)
    with _reported():
        parse_address(address)
    if password_stdin:
        password = _read_password_line()
    store = _open(settings)
    with store, _reported():
        change = _admin(settings, store).add_user(address, password, quota)
    _report(change)


def _warn(text: str) -> None:
    click.echo(f"warning: {text}", err=True)


def _user_dict(found: User) -> dict[str, object]:
    return dataclasses.asdict(found)


@user.command("list")
@config_options
@click.argument("domain_name", metavar="[DOMAIN]", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of users.")
def user_list(
    config_path: Path | None, data_dir: Path | None, domain_name: str | None, as_json: bool
) -> None:
    """List users, all or those of DOMAIN."""
    settings = data_settings(config_path, data_dir)
    with _reported():
        wanted = None if domain_name is None else normalize_domain(domain_name)
    found: tuple[User, ...] = ()
    with _existing(settings) as store:
        local = store.is_local_domain if store else settings.server.local_domains.__contains__
        if wanted is not None and not local(wanted):
            raise AccountError(f"domain {wanted} is not local")
        if store is not None:
            found = store.users(wanted)
    if as_json:
        _echo_json([_user_dict(u) for u in found])
        return
    width = max([len(u.address) for u in found] + [7])
    click.echo(f"{'ADDRESS':<{width}}  {'QUOTA':>6}  PASSWORD  CREATED")
    for found_user in found:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(found_user.created))
        password = "yes" if found_user.has_password else "no"
        quota = format_size(found_user.quota)
        click.echo(f"{found_user.address:<{width}}  {quota:>6}  {password:<8}  {created}")


@user.command("remove")
@config_options
@click.argument("address")
def user_remove(config_path: Path | None, data_dir: Path | None, address: str) -> None:
    """Remove the user ADDRESS (the mail already delivered to it stays on disk)."""
    settings = data_settings(config_path, data_dir)
    store = _open(settings)
    with store, _reported():
        change = _admin(settings, store).remove_user(address)
    _report(change)


@user.command("passwd")
@config_options
@click.argument("address")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@click.option("--clear", is_flag=True, help="Remove the password: the user can no longer log in.")
def user_passwd(
    config_path: Path | None, data_dir: Path | None, address: str, password_stdin: bool, clear: bool
) -> None:
    """Set the password of ADDRESS, asked for twice when stdin is a terminal."""
    if clear and password_stdin:
        raise click.UsageError("give either --clear or --password-stdin, not both")
    settings = data_settings(config_path, data_dir)
    store = _open(settings)
    with store, _reported():
        admin = _admin(settings, store)
        admin.existing_user(address)
        password = None if clear else _new_password(password_stdin)
        change = admin.set_password(address, password)
    _report(change)


@user.command("quota")
@config_options
@click.argument("address")
@click.argument("size", metavar="SIZE|none")
def user_quota(config_path: Path | None, data_dir: Path | None, address: str, size: str) -> None:
    """Set the quota of ADDRESS (e.g. 500M or 2G), or remove it with "none"."""
    try:
        quota = None if size.strip().lower() == "none" else parse_size(size)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), param_hint="SIZE") from None
    settings = data_settings(config_path, data_dir)
    store = _open(settings)
    with store, _reported():
        change = _admin(settings, store).set_quota(address, quota)
    _report(change)


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return _read_password_line()
    if not sys.stdin.isatty():
        raise click.UsageError(
            "standard input is not a terminal; pass the password with --password-stdin"
        )
    value = click.prompt("New password", hide_input=True, confirmation_prompt="Retype new password")
    return str(value)


# --- alias -----------------------------------------------------------------------------------


@click.group()
def alias() -> None:
    """Manage aliases (SOURCE is local@domain, or @domain for a domain's catch-all)."""


@alias.command("add")
@config_options
@click.argument("source")
@click.argument("targets", metavar="TARGET...", nargs=-1, required=True)
def alias_add(
    config_path: Path | None, data_dir: Path | None, source: str, targets: tuple[str, ...]
) -> None:
    """Send mail for SOURCE to each TARGET (local or remote); adds to an existing alias."""
    settings = data_settings(config_path, data_dir)
    store = _open(settings)
    with store, _reported():
        added = store.add_alias(source, targets)
        router = _router(settings, store)
        missing = [t for t in added.targets if isinstance(router.lookup(t), Unknown)]
        warnings = _alias_warnings(router, store, added)
    click.echo(f"{added.source} -> {', '.join(added.targets)}")
    for target in missing:
        _warn(f"{target} does not exist (yet); mail for it will bounce")
    for text in warnings:
        _warn(text)


def _alias_warnings(router: LocalRouter, store: AccountStore, added: Alias) -> list[str]:
    """What the alias will do that its author may not expect: hide a mailbox, or loop."""
    if added.source.startswith("@"):
        return []  # a catch-all only takes what no user or alias has
    found: list[str] = []
    expansion = router.expand(added.source)
    user = store.get_user(added.source)
    if user is not None and not reaches(router, added.source, user):
        found.append(
            f"the user {user.address} exists, and the alias wins at delivery: mail for"
            f" {user.address} goes to {', '.join(added.targets)}, not into its mailbox;"
            f" to keep a copy there: hato alias add {added.source} {user.address}"
        )
    reached = [m.address for m in expansion.mailboxes] + list(expansion.remote)
    rest = (
        f"while the other addresses it leads to ({', '.join(reached)}) still get their copy"
        if reached
        else "and nothing is delivered"
    )
    for failure in expansion.failures:
        if failure.status == ALIAS_LOOP:
            found.append(
                f"{failure.reason}; mail for {added.source} that goes round it is returned to"
                f" its sender as undeliverable ({ALIAS_LOOP}), {rest}"
            )
    return found


@alias.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array of aliases.")
def alias_list(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List aliases and their targets."""
    settings = data_settings(config_path, data_dir)
    found: tuple[Alias, ...] = ()
    with _existing(settings) as store:
        if store is not None:
            found = store.aliases()
    if as_json:
        _echo_json([dataclasses.asdict(a) for a in found])
        return
    for entry in found:
        click.echo(f"{entry.source} -> {', '.join(entry.targets)}")


@alias.command("remove")
@config_options
@click.argument("source")
@click.argument("target", required=False)
def alias_remove(
    config_path: Path | None, data_dir: Path | None, source: str, target: str | None
) -> None:
    """Remove the alias SOURCE, or only its TARGET (the alias goes with its last target)."""
    settings = data_settings(config_path, data_dir)
    store = _open(settings)
    with store, _reported():
        store.remove_alias(source, target)
    click.echo(f"removed {target} from {source}" if target else f"removed alias {source}")
