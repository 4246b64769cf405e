"""Reading TOML into Settings, naming every bad key, and writing settings back as TOML."""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import enum
import functools
import ipaddress
import math
import os
import socket
import textwrap
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hato.config._hostname import hostname_warning
from hato.config._settings import (
    LMTP_PORT,
    MILTER_LISTENERS,
    MILTER_MACRO_STAGES,
    RULE_AUTH_CONDITIONS,
    RULE_FLAGS,
    RULE_SPF_RESULTS,
    RULE_SPF_STAGES,
    AccessRule,
    DovecotSocket,
    FilterFailure,
    HostPort,
    ListenAddress,
    LmtpTarget,
    MilterSettings,
    MilterSocket,
    RuleAction,
    Settings,
    TlsPolicy,
    TlsPolicyEntry,
    Transport,
)
from hato.smtp import AddressError, domain_a_label, is_ip_address, parse_path, parse_reply

_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.Enum)
_N = TypeVar("_N", int, float)

# Turns a raw TOML value at a dotted key into its setting; raises ConfigError naming the key.
_Parser = Callable[[object, str], object]

_SMTP_PORT = 25  # RFC 5321 4.5.4: the port of a next hop that names none
_DNS_PORT = 53


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the configuration, at a dotted key such as ``server.listen[1]``.

    ``key`` is "" for problems with the file as a whole (unreadable, not TOML).
    """

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists everything found, not the first."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def _fail(key: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(key, message)])


# --- Loading ---------------------------------------------------------------------------------


def load_settings(
    path: Path | None = None,
    *,
    overrides: Mapping[str, object] | None = None,
    fallbacks: Mapping[str, object] | None = None,
) -> Settings:
    """Read ``path`` (None: all defaults), apply ``overrides`` and validate the result.

    ``overrides`` maps dotted keys (``"server.listen"``) to values as TOML would give them;
    they replace what the file says before anything is checked, so they are checked alike.
    ``fallbacks`` are alike, but only for keys that neither the file nor the overrides set
    (or set to "" or [], which mean "work it out"): the CLI takes what the running server
    uses this way. Raises ConfigError listing every problem found.
    """
    problems: list[ConfigProblem] = []
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_file(path, problems)
    _apply_overrides(raw, overrides or {}, problems)
    _apply_fallbacks(raw, fallbacks or {})
    settings = _build(raw, problems)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def check_file(path: Path) -> list[ConfigProblem]:
    """Every problem with the file at ``path``; [] when it loads."""
    try:
        load_settings(path)
    except ConfigError as exc:
        return list(exc.problems)
    return []


# A trusted network wider than this lets a good part of the Internet relay. (An IPv4
# client seen as ::ffff:a.b.c.d is compared as a.b.c.d, so ::ffff:0:0/96 trusts no one.)
_WIDEST_TRUSTED = {4: 8, 6: 32}


def settings_warnings(settings: Settings) -> list[ConfigProblem]:
    """What loads but is most likely a mistake: a relay open to the world, for a start."""
    found: list[ConfigProblem] = []
    for index, text in enumerate(settings.relay.trusted_networks):
        network = ipaddress.ip_network(text)
        if network.prefixlen == 0:
            message = (
                f"{_toml_string(text)} trusts every client: an OPEN RELAY that relays anyone's"
                " mail anywhere; trust your own networks only, and let others use AUTH"
            )
        elif network.prefixlen < _WIDEST_TRUSTED[network.version]:
            message = (
                f"{_toml_string(text)} trusts {network.num_addresses:,} addresses to relay;"
                " a network this wide is almost an open relay"
            )
        else:
            continue
        found.append(ConfigProblem(f"relay.trusted_networks[{index}]", message))
    hostname = hostname_warning(settings.server.hostname)
    if hostname is not None:
        found.insert(
            0, ConfigProblem("server.hostname", hostname.removeprefix("server.hostname: "))
        )
    return found


def file_warnings(path: Path) -> list[ConfigProblem]:
    """``settings_warnings`` of the file at ``path``; [] when it does not load."""
    try:
        return settings_warnings(load_settings(path))
    except ConfigError:
        return []


def _read_file(path: Path, problems: list[ConfigProblem]) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(ConfigProblem("", f"cannot read {path}: {exc.strerror or exc}"))
        return {}
    try:
        # Some editors start UTF-8 files with a byte order mark, which TOML does not expect.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.append(ConfigProblem("", f"{path}: not UTF-8 (at line {line})"))
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends with "(at line L, column C)".
        problems.append(ConfigProblem("", f"{path}: invalid TOML: {exc}"))
        return {}


def _apply_overrides(
    raw: dict[str, Any], overrides: Mapping[str, object], problems: list[ConfigProblem]
) -> None:
    for dotted, value in overrides.items():
        section, dot, key = dotted.partition(".")
        if not (section and dot and key):
            problems.append(ConfigProblem(dotted, 'an override needs the form "section.key"'))
            continue
        table = raw.setdefault(section, {})
        # A section that is not a table is reported when the sections are checked.
        if isinstance(table, dict):
            table[key] = value


def _apply_fallbacks(raw: dict[str, Any], fallbacks: Mapping[str, object]) -> None:
    for dotted, value in fallbacks.items():
        section, _, key = dotted.partition(".")
        table = raw.setdefault(section, {})
        if isinstance(table, dict) and table.get(key, "") in ("", []):
            table[key] = value


def _build(raw: Mapping[str, Any], problems: list[ConfigProblem]) -> Settings | None:
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    problems.extend(_misplaced(_unknown_keys("", raw, sections), raw))
    hints = typing.get_type_hints(Settings)
    values: dict[str, dict[str, Any]] = {}
    for name in sections:
        table = raw.get(name, {})
        if not isinstance(table, dict):
            problems.append(ConfigProblem(name, f"expected a table, got {_describe(table)}"))
            continue
        parsed = _parse_section(name, hints[name], table, problems)
        if parsed is not None:
            values[name] = parsed
    if len(values) < len(sections):
        return None
    _fill_computed(values["server"], values["log"])
    accounts = values["accounts"]
    if accounts["userdb"] is not None and accounts["delivery"] is None:
        problems.append(
            ConfigProblem(
                "accounts.userdb",
                "Dovecot's users have no Maildir in Hato: set accounts.delivery to Dovecot's"
                ' LMTP server too, such as "lmtp:unix:/run/dovecot/lmtp"',
            )
        )
        return None
    tls = values["tls"]
    if tls["key"] is not None and tls["certificate"] is None:
        problems.append(ConfigProblem("tls.key", 'set tls.certificate too, or leave key ""'))
        return None
    return Settings(**{name: hints[name](**values[name]) for name in sections})


def _parse_section(
    section: str, cls: type, table: Mapping[str, object], problems: list[ConfigProblem]
) -> dict[str, Any] | None:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems.extend(_misplaced(_unknown_keys(section, table, fields), table))
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    valid = True
    for name, f in fields.items():
        key = f"{section}.{name}"
        raw = table[name] if name in table else _file_default(f)
        try:
            values[name] = _parser_for(f, hints[name])(raw, key)
        except ConfigError as exc:
            problems.extend(_hidden(exc.problems) if f.metadata.get("secret") else exc.problems)
            valid = False
    return values if valid else None


def _hidden(problems: Sequence[ConfigProblem]) -> list[ConfigProblem]:
    # The messages quote the value given ("got an integer (1234)"): not for a password.
    return [
        ConfigProblem(p.key, "expected a string in quotes (the value is a secret: not shown)")
        for p in problems
    ]


def _unknown_keys(
    section: str, table: Mapping[str, object], known: Mapping[str, object]
) -> list[ConfigProblem]:
    what = "unknown key" if section else "unknown section"
    found = []
    for name in table:
        if name in known:
            continue
        message = what
        near = difflib.get_close_matches(name, list(known), n=1)
        if near:
            message += f' (did you mean "{near[0]}"?)'
        found.append(ConfigProblem(f"{section}.{name}" if section else name, message))
    return found


@functools.cache
def _key_sections() -> dict[str, tuple[str, ...]]:
    """Each setting's name and the sections that have it: where a stray key belongs."""
    hints = typing.get_type_hints(Settings)
    found: dict[str, list[str]] = {}
    for section in dataclasses.fields(Settings):
        for f in dataclasses.fields(hints[section.name]):
            found.setdefault(f.name, []).append(section.name)
    return {name: tuple(where) for name, where in found.items()}


def _misplaced(found: list[ConfigProblem], table: Mapping[str, object]) -> list[ConfigProblem]:
    """Unknown keys that are settings of another section say which one they belong to.

    A key written above every [section] header is top-level in TOML, and one written
    below the wrong header is that section's: either way the name is known elsewhere
    (at the top level, a misspelling of one is taken as it, as difflib finds it).
    """
    homes = _key_sections()
    named: list[ConfigProblem] = []
    for problem in found:
        section, _, name = problem.key.rpartition(".")
        if name not in homes and not section and not isinstance(table.get(name), dict):
            name = next(iter(difflib.get_close_matches(name, list(homes), n=1)), name)
        places = [home for home in homes.get(name, ()) if home != section]
        if not places or isinstance(table.get(problem.key.rpartition(".")[2]), dict):
            named.append(problem)  # a misspelled section, or a typo _unknown_keys names
            continue
        keys = " or ".join(f"{home}.{name}" for home in places)
        headers = " or ".join(f"[{home}]" for home in places)
        where = f"unknown key in [{section}]" if section else "not a section: settings go in one"
        named.append(ConfigProblem(problem.key, f"{where}; did you mean {keys} (under {headers})?"))
    return named


def _fill_computed(server: dict[str, Any], log: dict[str, Any]) -> None:
    """Settings whose default depends on the machine or on another setting."""
    if not server["hostname"]:
        server["hostname"] = socket.getfqdn().lower().rstrip(".")
    if not server["local_domains"]:
        server["local_domains"] = _unique(("localhost", server["hostname"]))
    if log["events_file"] is not None:
        # An absolute events_file stays as it is: joining onto an absolute path replaces.
        log["events_file"] = server["data_dir"] / log["events_file"]


def _unique(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


# --- Parsers ---------------------------------------------------------------------------------


def _parser_for(f: dataclasses.Field[Any], hint: object) -> _Parser:
    kind = f.metadata.get("kind")
    if kind is not None:
        return _SPECIAL_PARSERS[kind]
    if hint is bool:
        return _scalar(_to_bool)
    if hint is str:
        return _scalar(_to_str)
    if hint is int:
        return _scalar(lambda value: _in_range(_to_int(value), f.metadata))
    if hint is float:
        return _scalar(lambda value: _in_range(_to_float(value), f.metadata))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _scalar(functools.partial(_to_choice, hint))
    raise TypeError(f"no parser for setting {f.name} of type {hint!r}")


def _scalar(convert: Callable[[object], object]) -> _Parser:
    def parse(value: object, key: str) -> object:
        try:
            return convert(value)
        except ValueError as exc:
            raise _fail(key, str(exc)) from None

    return parse


def _array(item: Callable[[object], _T]) -> Callable[[object, str], list[_T]]:
    """A parser for a TOML array that reports every bad element under ``key[i]``."""

    def parse(value: object, key: str) -> list[_T]:
        if not isinstance(value, list | tuple):
            raise _fail(key, f"expected an array, got {_describe(value)}")
        items: list[_T] = []
        problems: list[ConfigProblem] = []
        for index, element in enumerate(value):
            try:
                items.append(item(element))
            except ValueError as exc:
                problems.append(ConfigProblem(f"{key}[{index}]", str(exc)))
        if problems:
            raise ConfigError(problems)
        return items

    return parse


def _to_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def _to_int(value: object) -> int:
    # bool is a subclass of int in Python, but "true" is no number of bytes.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_describe(value)}")
    return value


def _to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {_describe(value)}")
    return float(value)


def _in_range(value: _N, rules: Mapping[str, Any]) -> _N:
    if "ge" in rules and value < rules["ge"]:
        raise ValueError(f"must be at least {rules['ge']}, got {value}")
    if "gt" in rules and value <= rules["gt"]:
        raise ValueError(f"must be greater than {rules['gt']}, got {value}")
    return value


def _to_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    return value


def _to_choice(choices: type[_E], value: object) -> _E:
    text = _to_str(value)
    for member in choices:
        if member.value == text:
            return member
    allowed = ", ".join(_toml_string(str(member.value)) for member in choices)
    raise ValueError(f"must be one of {allowed}; got {_toml_string(text)}")


def _to_path_text(value: object) -> str:
    # Overrides may hand over a Path where a file would have a string.
    text = _to_str(os.fspath(value) if isinstance(value, os.PathLike) else value)
    if "\0" in text:
        raise ValueError("a path cannot contain a NUL character")
    return text


def _to_data_dir(value: object) -> Path:
    text = _to_path_text(value)
    if not text:
        raise ValueError("must name a directory")
    path = Path(text)
    return path if path.is_absolute() else Path.cwd() / path


def _to_events_file(value: object) -> Path | None:
    text = _to_path_text(value)
    return Path(text) if text else None


def _to_domain(value: object) -> str:
    text = _to_str(value)
    if not text:
        raise ValueError("a domain cannot be empty")
    if text.endswith("."):
        raise ValueError(f"{_toml_string(text)}: write the domain without the final dot")
    try:
        return domain_a_label(text)
    except AddressError as error:
        # Messages quote values as the file writes them.
        raise ValueError(str(error).replace(text, _toml_string(text), 1)) from None


def _to_hostname(value: object) -> str:
    text = _to_str(value)
    # "" stays for _fill_computed, which knows it means the machine's name.
    return _to_domain(text) if text else ""


def _to_domains(value: object, key: str) -> tuple[str, ...]:
    return _unique(_array(_to_domain)(value, key))


def _to_listen_address(value: object) -> ListenAddress:
    return ListenAddress.parse(_to_str(value))


def _to_listen(value: object, key: str, *, required: bool = True) -> tuple[ListenAddress, ...]:
    addresses = _array(_to_listen_address)(value, key)
    if required and not addresses:
        raise _fail(key, "needs at least one address")
    first_at: dict[ListenAddress, int] = {}
    problems: list[ConfigProblem] = []
    for index, address in enumerate(addresses):
        # Port 0 twice is two different ephemeral ports, so it is no duplicate.
        if address.port and address in first_at:
            problems.append(ConfigProblem(f"{key}[{index}]", f"same as {key}[{first_at[address]}]"))
        first_at.setdefault(address, index)
    if problems:
        raise ConfigError(problems)
    return tuple(addresses)


def _pem_file(marker: bytes, what: str) -> Callable[[object], Path | None]:
    """A PEM file that must be readable now, so a typo is named at start-up, not at SIGHUP."""

    def parse(value: object) -> Path | None:
        text = _to_path_text(value)
        if not text:
            return None
        path = Path(text) if Path(text).is_absolute() else Path.cwd() / text
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        if marker not in data:
            raise ValueError(f"{path} holds no PEM {what}")
        return path

    return parse


def _to_delimiter(value: object) -> str:
    text = _to_str(value)
    # One character that cannot be part of a domain or an ordinary local-part atom run.
    if len(text) > 1 or (text and (text.isalnum() or text in '@."\\ ')):
        raise ValueError(f"expected one separator character such as + or -, got {text!r}")
    return text


def _to_network(value: object) -> str:
    text = _to_str(value)
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f"{_toml_string(text)} is not a network such as 10.0.0.0/8") from None


def _to_networks(value: object, key: str) -> tuple[str, ...]:
    return _unique(_array(_to_network)(value, key))


def _to_host_port(text: str, default_port: int) -> HostPort:
    """``host``, ``host:port``, ``ip``, ``[ip]`` or ``[ip]:port``: the one grammar of every
    next hop and name server. Raises ValueError saying why.

    A bare IPv6 address takes the default port; with a port it needs brackets, since
    ``::1:25`` is itself an address. Brackets hold only an address: Postfix's ``[host]``
    means "no MX lookup", which a configured next hop never does anyway.
    """
    if is_ip_address(text):
        return HostPort(str(ipaddress.ip_address(text)), default_port)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f'{_toml_string(text)} needs the form "[ADDRESS]:PORT"')
        if not is_ip_address(host):
            raise ValueError(
                f"{_toml_string(text)}: brackets are for IP addresses; write a host name without"
                " them"
            )
        has_port, port_text = bool(rest), rest[1:]
        host = str(ipaddress.ip_address(host))
    else:
        host, colon, port_text = text.rpartition(":") if ":" in text else (text, "", "")
        if ":" in host:
            raise ValueError(f"{_toml_string(text)}: an IPv6 address needs brackets")
        has_port = bool(colon)
        host = str(ipaddress.ip_address(host)) if is_ip_address(host) else _to_domain(host)
    if not has_port:
        return HostPort(host, default_port)
    # int() would also take "+25", " 25" and non-ASCII digits; "" is a port left out by mistake.
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"{_toml_string(text)}: port must be 1-65535")
    return HostPort(host, int(port_text))


def _to_nexthop(value: object) -> HostPort | None:
    text = _to_str(value)
    return _to_host_port(text, _SMTP_PORT) if text else None


def _to_port(value: object) -> int:
    port = _to_int(value)
    if not 0 < port < 65536:
        raise ValueError(f"a port is 1-65535, got {port}")
    return port


def _pair(value: object) -> tuple[str, str]:
    """A "domain value" table entry: the domain as an A-label, and the value's text."""
    domain, _, target = _to_str(value).strip().partition(" ")
    target = target.strip()
    if not domain or not target:
        raise ValueError('expected "domain value", e.g. "example.com 192.0.2.1:25"')
    return _to_domain(domain), target


def _to_transport(value: object) -> Transport:
    domain, target = _pair(value)
    if target.startswith("lmtp:"):
        return Transport(domain, None, _to_lmtp_target(target))
    return Transport(domain, None if target == "local" else _to_host_port(target, _SMTP_PORT))


def _to_lmtp_target(text: str) -> LmtpTarget:
    """``lmtp:unix:/absolute/path`` or ``lmtp:host[:port]`` (port 24 when none is named)."""
    rest = text.removeprefix("lmtp:")
    if rest.startswith("unix:"):
        path = rest.removeprefix("unix:")
        if not path.startswith("/") or "\0" in path:
            raise ValueError(f"{_toml_string(text)}: a unix socket needs an absolute path")
        return LmtpTarget(path=path)
    if not rest:
        raise ValueError(f'{_toml_string(text)}: expected "lmtp:unix:/path" or "lmtp:host:port"')
    return LmtpTarget(address=_to_host_port(rest, LMTP_PORT))


def _to_dovecot_socket(value: object, *, default_words: tuple[str, ...]) -> DovecotSocket | None:
    """``dovecot:/absolute/path`` or ``dovecot:inet:host:port``; a default word is None."""
    text = _to_str(value).strip()
    if text in default_words:
        return None
    expected = f'expected "dovecot:/path" or "dovecot:inet:host:port", got {_toml_string(text)}'
    if not text.startswith("dovecot:"):
        raise ValueError(expected)
    rest = text.removeprefix("dovecot:")
    if rest.startswith("inet:"):
        inet = rest.removeprefix("inet:")
        if not inet.rpartition(":")[2].isdigit() or inet.endswith("]"):
            raise ValueError(f'{_toml_string(text)}: expected "dovecot:inet:host:port"')
        return DovecotSocket(address=_to_host_port(inet, 1))
    if not rest.startswith("/") or "\0" in rest:
        raise ValueError(f"{_toml_string(text)}: a unix socket needs an absolute path")
    return DovecotSocket(path=rest)


def _to_delivery(value: object) -> LmtpTarget | None:
    text = _to_str(value).strip()
    if text in ("", "maildir"):
        return None
    if not text.startswith("lmtp:"):
        raise ValueError(
            f'{_toml_string(text)}: expected "maildir", "lmtp:unix:/path" or "lmtp:host:port"'
        )
    return _to_lmtp_target(text)


def _to_tls_policy_entry(value: object) -> TlsPolicyEntry:
    domain, policy = _pair(value)
    return TlsPolicyEntry(domain, _to_choice(TlsPolicy, policy))


_Entry = TypeVar("_Entry", Transport, TlsPolicyEntry)


def _to_domain_table(entry: Callable[[object], _Entry]) -> _Parser:
    """A per-domain table: one entry per domain, since of two different ones for a domain
    one would be ignored without a word. The same entry twice is kept once."""

    def parse(value: object, key: str) -> tuple[_Entry, ...]:
        entries = _array(entry)(value, key)
        first_at: dict[str, int] = {}
        problems: list[ConfigProblem] = []
        for index, item in enumerate(entries):
            first = first_at.setdefault(item.domain, index)
            if entries[first] != item:
                message = f"{_toml_string(item.domain)} is already in {key}[{first}]"
                problems.append(ConfigProblem(f"{key}[{index}]", message))
        if problems:
            raise ConfigError(problems)
        return _unique(entries)

    return parse


def _to_mechanism(value: object) -> str:
    allowed = ("PLAIN", "LOGIN")
    name = _to_str(value).upper()
    if name not in allowed:
        raise ValueError(f"mechanism must be one of {', '.join(allowed)}; got {value!r}")
    return name


def _to_nameserver(value: object) -> HostPort:
    text = _to_str(value)
    if not text:  # not "a domain cannot be empty": no name is ever right here
        raise ValueError('a name server is an IP address, got ""')
    server = _to_host_port(text, _DNS_PORT)
    if not server.is_ip:
        raise ValueError(f"{_toml_string(text)}: a name server is an IP address")
    return server


# --- Access rules (policy.connect, .helo, .mail, .rcpt, .data) -------------------------------

_RULE_FIELDS = {f.name: f for f in dataclasses.fields(AccessRule)}


def _to_address_pattern(value: object) -> str:
    """A sender or recipient pattern in the form matching compares: see AccessRule."""
    text = _to_str(value).strip()
    if text == "<>":
        return text
    local, at, domain = text.rpartition("@")
    if not at:
        local, domain = "", text
    if at:
        _check_local_part(local, text)
    if at and not domain:  # "user@": the local part at any domain
        if not local:
            raise ValueError("a pattern needs a local part, a domain or both")
        return f"{local.casefold()}@"
    subdomains = domain.startswith(".")
    a_label = _to_domain(domain[1:] if subdomains else domain)
    domain = "." + a_label if subdomains else a_label
    if local:
        if subdomains:
            raise ValueError(f"{_toml_string(text)}: write user@domain or .domain, not both")
        return f"{local.casefold()}@{domain}"
    return domain if subdomains else "@" + domain


def _check_local_part(local: str, pattern: str) -> None:
    """The local part of a pattern, if any, is one an address can have ("a@", not "@@")."""
    if not local:
        return
    try:
        # A source route ("@relay:") would pass as the path's, and is no local part.
        if local.startswith("@"):
            raise AddressError("a route")
        parse_path(f"{local}@example.com", utf8=True, allow_null=False)
    except AddressError:
        raise ValueError(
            f"{_toml_string(pattern)}: {_toml_string(local)} is no local part; write"
            " user@example.com, @example.com, .example.com or user@"
        ) from None


def _to_mailbox(value: object) -> str:
    """An address such as accounts.postmaster; "" stays (it means the built-in choice)."""
    text = _to_str(value).strip()
    if text:
        try:
            parse_path(text, utf8=True, allow_null=False)
        except AddressError as error:
            raise ValueError(f"{_toml_string(text)} is not an address: {error}") from None
    return text


def _to_helo_pattern(value: object) -> str:
    text = _to_str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        literal = text[1:-1]
        address = literal[5:] if literal.lower().startswith("ipv6:") else literal
        if not is_ip_address(address):
            raise ValueError(f"{_toml_string(text)} is not an address literal")
        return "[" + str(ipaddress.ip_address(address)) + "]"
    if text.startswith("."):
        return "." + _to_domain(text[1:])
    return _to_domain(text)


def _rule_reply(text: str, action: RuleAction, stage: str) -> str:
    if not text:
        return ""
    if action is RuleAction.ACCEPT:
        raise ValueError('an "accept" rule sends no reply of its own')
    answer = parse_reply(text)
    first = "5" if action is RuleAction.REJECT else "4"
    if str(answer.code)[0] != first:
        raise ValueError(f'a "{action}" rule needs a {first}xx reply, got {answer.code}')
    if stage == "connect" and answer.code not in (421, 554):
        # RFC 5321 4.3.2: a greeting is 220, 554 or 421, nothing else.
        raise ValueError(f"at connect the reply is 554 or 421, got {answer.code}")
    return str(answer)


def _to_results(name: str) -> _Parser:
    """A message-check condition: one result word or an array of them."""
    allowed = RULE_SPF_RESULTS if name == "spf" else RULE_AUTH_CONDITIONS[name]

    def word(value: object) -> str:
        text = _to_str(value).strip().lower()
        if text not in allowed:
            choices = ", ".join(f'"{w}"' for w in allowed)
            raise ValueError(f"expected one of {choices}, got {_toml_string(_to_str(value))}")
        return text

    def parse(value: object, key: str) -> tuple[str, ...]:
        if not isinstance(value, str):
            return _unique(_array(word)(value, key))
        try:
            return (word(value),)
        except ValueError as exc:
            raise _fail(key, str(exc)) from None

    return parse


def _to_rules(stage: str) -> _Parser:
    def parse_rule(table: object, key: str) -> AccessRule:
        if not isinstance(table, dict):
            raise _fail(key, f"expected a table, got {_describe(table)}")
        problems = _unknown_keys(key, table, _RULE_FIELDS)
        values: dict[str, Any] = {}
        checks: dict[str, _Parser] = {
            "action": _scalar(functools.partial(_to_choice, RuleAction)),
            "name": _scalar(_to_str),
            "reply": _scalar(_to_str),
            "client": _to_networks,
            "helo": lambda v, k: _unique(_array(_to_helo_pattern)(v, k)),
            "sender": lambda v, k: _unique(_array(_to_address_pattern)(v, k)),
            "recipient": lambda v, k: _unique(_array(_to_address_pattern)(v, k)),
            "dnsbl": _to_domains,
        } | {flag: _scalar(_to_bool) for flag in RULE_FLAGS}
        checks |= {name: _to_results(name) for name in RULE_AUTH_CONDITIONS}
        checks["spf"] = _to_results("spf")
        if stage not in RULE_SPF_STAGES and "spf" in table:
            problems.append(
                ConfigProblem(
                    f"{key}.spf",
                    "spf is known from MAIL FROM on: use it in mail, rcpt, data or end",
                )
            )
        if stage != "end":
            problems.extend(
                ConfigProblem(
                    f"{key}.{name}",
                    f"{name} is known only once the message has been received and checked:"
                    " use it in [policy] end",
                )
                for name in RULE_AUTH_CONDITIONS
                if name in table
            )
        if "action" not in table:
            problems.append(
                ConfigProblem(f"{key}.action", 'missing: "accept", "reject" or "defer"')
            )
        for name, value in table.items():
            if name in checks:
                try:
                    values[name] = checks[name](value, f"{key}.{name}")
                except ConfigError as exc:
                    problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        try:
            values["reply"] = _rule_reply(values.get("reply", ""), values["action"], stage)
        except ValueError as exc:
            raise _fail(f"{key}.reply", str(exc)) from None
        return AccessRule(**values)

    def parse(value: object, key: str) -> tuple[AccessRule, ...]:
        if not isinstance(value, list | tuple):
            raise _fail(key, f"expected an array of tables, got {_describe(value)}")
        rules: list[AccessRule] = []
        problems: list[ConfigProblem] = []
        for index, table in enumerate(value):
            if isinstance(table, AccessRule):  # settings written back and read again
                rules.append(table)
                continue
            try:
                rules.append(parse_rule(table, f"{key}[{index}]"))
            except ConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        return tuple(rules)

    return parse


def _to_milter_socket(value: object) -> MilterSocket:
    text = _to_str(value)
    kind, colon, rest = text.partition(":")
    if kind == "unix" and colon:
        if not rest.startswith("/"):
            raise ValueError(f"{_toml_string(text)}: a unix socket needs an absolute path")
        return MilterSocket("unix", path=rest)
    if kind == "inet" and colon:
        try:
            address = _to_host_port(rest, 0)
        except ValueError as exc:
            raise ValueError(f"{_toml_string(text)}: {exc}") from None
        return MilterSocket("inet", host=address.host, port=address.port)
    raise ValueError(
        f'expected "inet:HOST:PORT", "inet:[IPV6]:PORT" or "unix:/PATH", got {_toml_string(text)}'
    )


def _to_milter_name(value: object) -> str:
    text = _to_str(value)
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in text):
        raise ValueError(f"a name of letters, digits, '-', '_' and '.', got {_toml_string(text)}")
    return text


def _to_milter_listener(value: object) -> str:
    text = _to_str(value)
    if text not in MILTER_LISTENERS:
        choices = ", ".join(f'"{w}"' for w in MILTER_LISTENERS)
        raise ValueError(f"expected one of {choices}, got {_toml_string(text)}")
    return text


def _to_macro_name(value: object) -> str:
    text = _to_str(value)
    plain = len(text) == 1 and text.isascii() and (text.isalnum() or text == "_")
    braced = len(text) > 2 and text[0] == "{" and text[-1] == "}" and " " not in text
    if not (plain or braced):
        raise ValueError(f'a macro is one character or "{{name}}", got {_toml_string(text)}')
    return text


def _to_milter_macros(value: object, key: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        raise _fail(key, f"expected a table of stage = [macros], got {_describe(value)}")
    problems = _unknown_keys(key, value, dict.fromkeys(MILTER_MACRO_STAGES))
    found: dict[str, tuple[str, ...]] = {}
    for stage, names in value.items():
        if stage in MILTER_MACRO_STAGES:
            try:
                found[stage] = _unique(_array(_to_macro_name)(names, f"{key}.{stage}"))
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return tuple((stage, found[stage]) for stage in MILTER_MACRO_STAGES if stage in found)


def _timeout(value: object) -> float:
    seconds = _to_float(value)
    if not seconds > 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return seconds


_MILTER_FIELDS: dict[str, _Parser] = {
    "name": _scalar(_to_milter_name),
    "socket": _scalar(_to_milter_socket),
    "listeners": lambda v, k: _unique(_array(_to_milter_listener)(v, k)),
    "default_action": _scalar(functools.partial(_to_choice, FilterFailure)),
    "connect_timeout": _scalar(_timeout),
    "command_timeout": _scalar(_timeout),
    "message_timeout": _scalar(_timeout),
    "macros": _to_milter_macros,
}


def _to_milter(table: object, key: str) -> MilterSettings:
    if isinstance(table, MilterSettings):  # settings written back and read again
        return table
    if not isinstance(table, dict):
        raise _fail(key, f"expected a table, got {_describe(table)}")
    problems = _unknown_keys(key, table, _MILTER_FIELDS)
    problems += [
        ConfigProblem(f"{key}.{name}", "missing")
        for name in ("name", "socket")
        if name not in table
    ]
    values: dict[str, Any] = {}
    for name, value in table.items():
        if name in _MILTER_FIELDS:
            try:
                values[name] = _MILTER_FIELDS[name](value, f"{key}.{name}")
            except ConfigError as exc:
                problems.extend(exc.problems)
    if "listeners" in values and not values["listeners"]:
        problems.append(ConfigProblem(f"{key}.listeners", "name at least one listener"))
    if problems:
        raise ConfigError(problems)
    return MilterSettings(**values)


def _to_milters(value: object, key: str) -> tuple[MilterSettings, ...]:
    if not isinstance(value, list | tuple):
        raise _fail(key, f"expected an array of tables, got {_describe(value)}")
    milters: list[MilterSettings] = []
    problems: list[ConfigProblem] = []
    for index, table in enumerate(value):
        try:
            milters.append(_to_milter(table, f"{key}[{index}]"))
        except ConfigError as exc:
            problems.extend(exc.problems)
    seen: set[str] = set()
    for index, found in enumerate(milters):
        if found.name in seen:
            problems.append(ConfigProblem(f"{key}[{index}].name", f"{found.name!r} is taken"))
        seen.add(found.name)
    if problems:
        raise ConfigError(problems)
    return tuple(milters)


_SPECIAL_PARSERS: dict[str, _Parser] = {
    "milters": _to_milters,
    "networks": _to_networks,
    "nexthop": _scalar(_to_nexthop),
    "port": _scalar(_to_port),
    "transports": _to_domain_table(_to_transport),
    "delivery": _scalar(_to_delivery),
    "dovecot_socket": _scalar(functools.partial(_to_dovecot_socket, default_words=("",))),
    "auth_backend": _scalar(functools.partial(_to_dovecot_socket, default_words=("", "store"))),
    "tls_policies": _to_domain_table(_to_tls_policy_entry),
    "nameservers": lambda value, key: _unique(_array(_to_nameserver)(value, key)),
    "mechanisms": lambda value, key: _unique(_array(_to_mechanism)(value, key)),
    "delimiter": _scalar(_to_delimiter),
    "mailbox": _scalar(_to_mailbox),
    "hostname": _scalar(_to_hostname),
    "domains": _to_domains,
    "listen": _to_listen,
    "listen_optional": functools.partial(_to_listen, required=False),
    "certificate_file": _scalar(_pem_file(b"-----BEGIN CERTIFICATE-----", "certificate")),
    "key_file": _scalar(_pem_file(b"PRIVATE KEY-----", "private key")),
    "data_dir": _scalar(_to_data_dir),
    "events_file": _scalar(_to_events_file),
    "optional_path": _scalar(_to_events_file),
}
for _stage in ("connect", "helo", "mail", "rcpt", "data", "end"):
    _SPECIAL_PARSERS[f"rules_{_stage}"] = _to_rules(_stage)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value!r})"
    if isinstance(value, str):
        return f"a string ({_toml_string(value)})"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return "a date or time"
    return f"a {type(value).__name__}"


# --- Writing ---------------------------------------------------------------------------------

_EXAMPLE_HEADER = (
    "Hato configuration: every key, with its default. Settings here take effect at start-up;"
    " domains, users and aliases live in the store and change while Hato runs."
)
_EFFECTIVE_HEADER = (
    "Hato configuration in effect: every key, at the value the loaded settings hold."
)


# What a secret that is set shows as, unless secrets are asked for.
MASKED = "********"


def settings_to_dict(
    settings: Settings, *, show_secrets: bool = True
) -> dict[str, dict[str, object]]:
    """The settings as plain JSON and TOML values, in the file's shape.

    Without ``show_secrets``, a secret that is set (a password) is ``MASKED``; an unset one
    stays "", which says that none is configured.
    """
    return {
        section.name: {
            f.name: _shown(f, getattr(getattr(settings, section.name), f.name), show_secrets)
            for f in dataclasses.fields(getattr(settings, section.name))
        }
        for section in dataclasses.fields(Settings)
    }


def _shown(f: dataclasses.Field[Any], value: object, show_secrets: bool) -> object:
    if f.metadata.get("secret") and value and not show_secrets:
        return MASKED
    return _plain(value)


def settings_to_toml(settings: Settings, *, show_secrets: bool = True) -> str:
    """The settings as documented TOML that load_settings reads back to equal settings
    (secrets included only with ``show_secrets``)."""
    return _render(settings_to_dict(settings, show_secrets=show_secrets), _EFFECTIVE_HEADER)


def example_toml() -> str:
    """The text of hato.example.toml: every key, documented, at the value an empty file means."""
    hints = typing.get_type_hints(Settings)
    defaults = {
        section.name: {f.name: _file_default(f) for f in dataclasses.fields(hints[section.name])}
        for section in dataclasses.fields(Settings)
    }
    return _render(defaults, _EXAMPLE_HEADER)


def _file_default(f: dataclasses.Field[Any]) -> object:
    """What the file means when it leaves out this setting, as a TOML value."""
    if "file_default" in f.metadata:
        return f.metadata["file_default"]
    if f.default is dataclasses.MISSING:
        raise TypeError(f"setting {f.name} has neither a default nor a file_default")
    return _plain(f.default)


def _plain(value: object) -> object:
    if value is None:
        return ""  # Optional paths (events_file, tls.certificate), smarthost: "" is None.
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(
        value,
        Path | ListenAddress | HostPort | Transport | TlsPolicyEntry | LmtpTarget | DovecotSocket,
    ):
        return str(value)  # each one's canonical text, which its parser reads back
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, MilterSocket):
        return str(value)
    if isinstance(value, MilterSettings):
        plain = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        plain["macros"] = {stage: list(names) for stage, names in value.macros}
        return plain
    if isinstance(value, AccessRule):
        # Only what the rule says: a condition left out and one set to its default differ
        # for the booleans (None: any), so None and () are what is left out.
        return {
            name: _plain(item)
            for name in _RULE_FIELDS
            if (item := getattr(value, name)) is not None and item != () and item != ""
        }
    return value


def _render(values: Mapping[str, Mapping[str, object]], header: str) -> str:
    hints = typing.get_type_hints(Settings)
    lines = _comment(header)
    for section in dataclasses.fields(Settings):
        lines += ["", *_comment(section.metadata["doc"]), f"[{section.name}]"]
        for f in dataclasses.fields(hints[section.name]):
            lines += ["", *_comment(f.metadata["doc"])]
            lines.append(f"{f.name} = {_toml_value(values[section.name][f.name])}")
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, width=90)]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    """A TOML basic string; also how messages quote values, so they read as the file does."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
