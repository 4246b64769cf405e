"""``hato web``: the HTTP service's console users and API tokens (``DATA/web.sqlite3``).

Changes reach a running ``hato serve`` at once: every login and request reads the store.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..accounts import InvalidInput
from ..config import Settings
from ..web import ADMIN, WEB_FILE, WebUserError, WebUsers
from ._common import config_options, data_settings

__all__ = ["web"]


def _users(settings: Settings) -> WebUsers:
    try:
        return WebUsers(settings.server.data_dir / WEB_FILE)
    except WebUserError as error:
        raise click.ClickException(str(error)) from None


@click.group()
def web() -> None:
    """Manage who may use the web console and the HTTP API."""


@web.command()
@config_options
@click.argument("name", default=ADMIN)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
def passwd(
    config_path: Path | None, data_dir: Path | None, name: str, password_stdin: bool
) -> None:
    """Set the console password of NAME (default admin), creating the user if needed."""
    settings = data_settings(config_path, data_dir)
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.UsageError("--password-stdin: standard input is empty")
        password = line.removesuffix("\n").removesuffix("\r")
    elif sys.stdin.isatty():
        password = str(
            click.prompt("New password", hide_input=True, confirmation_prompt="Retype new password")
        )
    else:
        raise click.UsageError(
            "standard input is not a terminal; pass the password with --password-stdin"
        )
    with _users(settings) as users:
        try:
            users.set_password(name, password)
        except InvalidInput as error:
            raise click.UsageError(str(error)) from None
        except WebUserError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"changed the web password of {name}")


@web.group()
def token() -> None:
    """API tokens, sent as Authorization: Bearer TOKEN."""


@token.command("add")
@config_options
@click.argument("name")
@click.option("--read-only", is_flag=True, help="The token may only read (GET).")
def token_add(config_path: Path | None, data_dir: Path | None, name: str, read_only: bool) -> None:
    """Make a token called NAME and print it (once: only its hash is kept)."""
    settings = data_settings(config_path, data_dir)
    with _users(settings) as users:
        try:
            secret = users.add_token(name, read_only=read_only)
        except InvalidInput as error:
            raise click.UsageError(str(error)) from None
        except WebUserError:
            raise click.ClickException(f"a token named {name!r} exists already") from None
    click.echo(secret)
    role = "read-only" if read_only else "admin"
    click.echo(f"token {name} ({role}) made; it is shown only now", err=True)


@token.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array of tokens.")
def token_list(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List the tokens (names and roles; the secrets are not kept)."""
    settings = data_settings(config_path, data_dir)
    with _users(settings) as users:
        found = users.tokens()
    if as_json:
        rows = [{"name": t.name, "role": t.role, "created": t.created} for t in found]
        click.echo(json.dumps(rows, indent=2))
        return
    for item in found:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(item.created))
        click.echo(f"{item.name}  {item.role}  {created}")


@token.command("remove")
@config_options
@click.argument("name")
def token_remove(config_path: Path | None, data_dir: Path | None, name: str) -> None:
    """Remove the token NAME: requests with it are refused from now on."""
    settings = data_settings(config_path, data_dir)
    with _users(settings) as users:
        try:
            users.remove_token(name)
        except WebUserError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"removed token {name}")
