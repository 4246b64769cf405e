"""Options shared by the commands: which configuration, and command-line overrides."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import (
    SERVER_RECORD,
    ConfigError,
    ServerRecord,
    Settings,
    load_settings,
    read_server_record,
)

__all__ = [
    "config_options",
    "data_settings",
    "override_option",
    "parse_overrides",
    "settings_from",
]

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


def load_settings_from(
    config_path: Path | None,
    settings_overrides: tuple[str, ...] = (),
    *,
    fallbacks: dict[str, object] | None = None,
    **overrides: object,
) -> Settings:
    """The file with the command line's ``-o`` options and named options over it (raises
    ``ConfigError``); what ``serve`` reads again on SIGHUP."""
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
    return load_settings(config_path, overrides=given, fallbacks=fallbacks)


def settings_from(
    config_path: Path | None,
    settings_overrides: tuple[str, ...] = (),
    *,
    fallbacks: dict[str, object] | None = None,
    **overrides: object,
) -> Settings:
    """Load settings or exit with every problem listed by its key."""
    try:
        return load_settings_from(config_path, settings_overrides, fallbacks=fallbacks, **overrides)
    except ConfigError as error:
        for problem in error.problems:
            where = problem.key or (str(config_path) if config_path else "config")
            click.echo(f"hato: {where}: {problem.message}", err=True)
        raise SystemExit(2) from None


# What decides which domains are local: the CLI must see them as the server does.
_LOCAL_KEYS = ("hostname", "local_domains")


def data_settings(
    config_path: Path | None,
    data_dir: Path | None,
    settings_overrides: tuple[str, ...] = (),
    *,
    require: bool = True,
) -> Settings:
    """Settings for a command that works on a server's data directory (all but ``serve``).

    The directory must exist (``require``): a command run from the wrong directory must
    not create a new, empty one and report on that. Settings the configuration leaves
    to be worked out (the hostname, the local domains) are taken from what the last
    ``hato serve`` there recorded, so a server started with ``--hostname`` and the CLI
    agree on what is local; a configuration that says otherwise wins, with a warning.
    """
    settings = settings_from(config_path, settings_overrides, data_dir=data_dir)
    where = settings.server.data_dir
    if require and not where.is_dir():
        _no_data_dir(settings, config_path, data_dir)
    record = read_server_record(where)
    if record is None:
        return settings
    fallbacks: dict[str, object] = {
        "server.hostname": record.hostname,
        "server.local_domains": list(record.local_domains),
    }
    settings = settings_from(config_path, settings_overrides, fallbacks=fallbacks, data_dir=where)
    _warn_if_disagreeing(settings, record, config_path)
    return settings


def _no_data_dir(settings: Settings, config_path: Path | None, data_dir: Path | None) -> None:
    where = settings.server.data_dir
    if data_dir is not None:
        source = "given by --data-dir"
    elif config_path is not None:
        source = f"server.data_dir of {config_path}"
    else:
        source = f"the default ./hato-data, taken from the working directory {Path.cwd()}"
    click.echo(f"hato: no data directory at {where} ({source})", err=True)
    click.echo(
        "hato: name the one hato serve uses with --data-dir DIR, or its configuration with"
        " --config FILE (or HATO_CONFIG=FILE); hato serve creates a new one",
        err=True,
    )
    raise SystemExit(1)


def _warn_if_disagreeing(
    settings: Settings, record: ServerRecord, config_path: Path | None
) -> None:
    server = settings.server
    ours = {"hostname": server.hostname, "local_domains": server.local_domains}
    theirs = {"hostname": record.hostname, "local_domains": record.local_domains}
    differing = [key for key in _LOCAL_KEYS if ours[key] != theirs[key]]
    if not differing:
        return
    state = f"running as pid {record.pid}" if record.running else "last started"
    source = str(config_path) if config_path is not None else "the command line"
    for key in differing:
        click.echo(
            f"hato: warning: server.{key} is {_shown(ours[key])} here ({source}), but the"
            f" hato serve on {server.data_dir} ({state}) uses {_shown(theirs[key])}"
            f" (recorded in {SERVER_RECORD}); give both the same configuration",
            err=True,
        )


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    return str(value)
