"""The ``hato`` command (layer 5): click commands over the composition root and the stores.

Each subcommand's module is imported only when that subcommand runs: ``hato queue list``
does not pay for the HTTP stack, DNS or mail authentication, which matters to the scripts
and tests that call ``hato`` many times.
"""

from __future__ import annotations

import importlib
import os

import click

from .. import __version__

__all__ = ["main"]

# name -> (module under hato.cli, the click command's attribute there)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("_serve", "serve"),
    "config": ("_config", "config"),
    "queue": ("_queue", "queue"),
    "domain": ("_accounts", "domain"),
    "user": ("_accounts", "user"),
    "alias": ("_accounts", "alias"),
    "mailbox": ("_mailbox", "mailbox"),
    "test": ("_test", "test"),
    "trace": ("_trace", "trace"),
    "dkim": ("_dkim", "dkim"),
    "web": ("_web", "web"),
    "sendmail": ("_sendmail", "sendmail"),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when named (``--help`` imports them all)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module = importlib.import_module(f"{__name__}.{where[0]}")
        command = getattr(module, where[1])
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hato")
def main() -> None:
    """Hato, a mail transfer agent."""
    # Whatever a command creates in the data directory (logs, trace, accounts, spool,
    # mailboxes, keys, and the -wal/-shm files SQLite makes) is for Hato's user alone,
    # whatever umask the shell or service manager passed on.
    os.umask(0o077)
