"""``hato serve``: run the mail server in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..config import Settings, settings_warnings
from ._common import config_options, load_settings_from, override_option, settings_from

__all__ = ["serve"]


@click.command()
@config_options
@override_option
@click.option(
    "--listen",
    multiple=True,
    metavar="ADDR:PORT",
    help="Listen address, repeatable (overrides server.listen), e.g. 127.0.0.1:2525 or [::1]:25.",
)
@click.option("--hostname", help="FQDN for the banner, EHLO and Received (server.hostname).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="What is printed on stderr (log.level); the JSON event log gets everything.",
)
def serve(
    config_path: Path | None,
    data_dir: Path | None,
    listen: tuple[str, ...],
    hostname: str | None,
    log_level: str | None,
    settings_overrides: tuple[str, ...],
) -> None:
    """Run Hato until SIGTERM or Ctrl-C."""
    options: dict[str, Any] = {
        "data_dir": data_dir,
        "listen": list(listen),
        "hostname": hostname,
        "log_level": log_level,
    }
    settings = settings_from(config_path, settings_overrides, **options)
    for warning in settings_warnings(settings):
        click.echo(f"hato: warning: {warning.key}: {warning.message}", err=True)
    # Imported here: the server's modules (HTTP, metrics, TLS) are not what the other
    # commands need, and every command would pay for loading them.
    from .. import app

    def reload() -> Settings:
        # SIGHUP: the same file and the same command-line options over it.
        return load_settings_from(config_path, settings_overrides, **options)

    raise SystemExit(app.run(settings, reload=reload))
