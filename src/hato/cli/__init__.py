"""The ``hato`` command (layer 5): click commands over the composition root and the stores."""

from __future__ import annotations

import os

import click

from .. import __version__
from ._accounts import alias, domain, user
from ._config import config
from ._dkim import dkim
from ._mailbox import mailbox
from ._queue import queue
from ._serve import serve
from ._test import test
from ._trace import trace
from ._web import web

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hato")
def main() -> None:
    """Hato, a mail transfer agent."""
    # Whatever a command creates in the data directory (logs, trace, accounts, spool,
    # mailboxes, keys, and the -wal/-shm files SQLite makes) is for Hato's user alone,
    # whatever umask the shell or service manager passed on.
    os.umask(0o077)


main.add_command(serve)
main.add_command(config)
main.add_command(queue)
main.add_command(domain)
main.add_command(user)
main.add_command(alias)
main.add_command(mailbox)
main.add_command(test)
main.add_command(trace)
main.add_command(dkim)
main.add_command(web)
