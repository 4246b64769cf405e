"""``hato config check|show``: validate a configuration file, print the effective one."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import (
    MASKED,
    check_file,
    file_warnings,
    settings_to_dict,
    settings_to_toml,
)
from ._common import config_options, override_option, settings_from

__all__ = ["config"]


@click.group()
def config() -> None:
    """Check or show the configuration."""


@config.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Report every problem in FILE with its key path; exit 1 if there is any."""
    problems = check_file(file)
    for problem in problems:
        click.echo(f"{file}: {problem.key or '(file)'}: {problem.message}")
    if problems:
        raise SystemExit(1)
    warnings = file_warnings(file)
    for warning in warnings:
        click.echo(f"{file}: {warning.key}: warning: {warning.message}")
    click.echo(f"{file}: ok" + (f", with {len(warnings)} warning(s)" if warnings else ""))


@config.command()
@config_options
@override_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@click.option("--show-secrets", is_flag=True, help=f'Print passwords instead of "{MASKED}".')
def show(
    config_path: Path | None,
    data_dir: Path | None,
    settings_overrides: tuple[str, ...],
    as_json: bool,
    show_secrets: bool,
) -> None:
    """Print the effective configuration (file, defaults and overrides together)."""
    settings = settings_from(config_path, settings_overrides, data_dir=data_dir)
    if as_json:
        click.echo(json.dumps(settings_to_dict(settings, show_secrets=show_secrets), indent=2))
    else:
        click.echo(settings_to_toml(settings, show_secrets=show_secrets), nl=False)
