"""Options shared by the commands: which configuration, and command-line overrides."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import ConfigError, Settings, load_settings

__all__ = ["config_options", "override_option", "parse_overrides", "settings_from"]

F = TypeVar("F", bound=Callable[..., Any])


def override_option(function: F) -> F:
    """``-o section.key=VALUE``: any setting from the command line, as Postfix's ``-o``."""
    return click.option(
        "-o",
        "--set",
        "settings_overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one setting, e.g. -o relay.trusted_networks=[] (a TOML value; repeatable).",
    )(function)


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


def parse_overrides(items: tuple[str, ...]) -> dict[str, object]:
    """``-o section.key=value`` pairs; the value is TOML (``25``, ``true``, ``["a"]``) or text."""
    parsed: dict[str, object] = {}
    for item in items:
        key, equals, text = item.partition("=")
        if not equals or "." not in key:
            raise click.BadParameter(f"{item!r}: expected section.key=value", param_hint="-o")
        try:
            parsed[key.strip()] = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            parsed[key.strip()] = text  # a bare word: take it as a string
    return parsed


def settings_from(
    config_path: Path | None, settings_overrides: tuple[str, ...] = (), **overrides: object
) -> Settings:
    """Load settings or exit with every problem listed by its key."""
    keys = {
        "data_dir": "server.data_dir",
        "listen": "server.listen",
        "hostname": "server.hostname",
        "log_level": "log.level",
    }
    given = parse_overrides(settings_overrides)
    given |= {
        k: v for name, v in overrides.items() if v not in (None, (), []) for k in [keys[name]]
    }
    try:
        return load_settings(config_path, overrides=given)
    except ConfigError as error:
        for problem in error.problems:
            where = problem.key or (str(config_path) if config_path else "config")
            click.echo(f"hato: {where}: {problem.message}", err=True)
        raise SystemExit(2) from None
