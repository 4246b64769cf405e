"""Options shared by the commands: which configuration, and command-line overrides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import ConfigError, Settings, load_settings

__all__ = ["config_options", "settings_from"]

F = TypeVar("F", bound=Callable[..., Any])


def config_options(function: F) -> F:
    """``--config`` and ``--data-dir``, the two every command that reads the spool needs."""
    function = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Data directory (overrides server.data_dir).",
    )(function)
    function = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="HATO_CONFIG",
        help="TOML configuration file (default: built-in defaults; env HATO_CONFIG).",
    )(function)
    return function


def settings_from(config_path: Path | None, **overrides: object) -> Settings:
    """Load settings or exit with every problem listed by its key."""
    keys = {
        "data_dir": "server.data_dir",
        "listen": "server.listen",
        "hostname": "server.hostname",
        "log_level": "log.level",
    }
    given = {keys[name]: value for name, value in overrides.items() if value not in (None, (), [])}
    try:
        return load_settings(config_path, overrides=given)
    except ConfigError as error:
        for problem in error.problems:
            where = problem.key or (str(config_path) if config_path else "config")
            click.echo(f"hato: {where}: {problem.message}", err=True)
        raise SystemExit(2) from None
