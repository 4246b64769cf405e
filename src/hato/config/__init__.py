"""Hato's configuration: one TOML file read at start-up into frozen, typed settings.

What this package promises:

- Settings that need a restart live in the file; domains, users and aliases live in the store
  and change while Hato runs, so they are not here.
- ``load_settings`` returns a complete ``Settings`` or raises ``ConfigError`` listing every
  problem, each under the dotted key it concerns (``smtp.max_recipients``,
  ``server.listen[1]``); nothing half-valid is ever returned.
- Loaded settings need no further interpretation: the hostname and local domains are filled
  in, domains are lowercase A-labels, data_dir and events_file are absolute paths, and
  next hops and name servers are ``HostPort`` values (the one ``host:port`` grammar), so no
  other layer parses configuration text again.
- Each setting is documented once, on its dataclass field; ``example_toml`` (the text of
  hato.example.toml) and ``settings_to_toml`` are written from those documents.
"""

from hato.config._hostname import hostname_warning, is_fully_qualified
from hato.config._load import (
    MASKED,
    ConfigError,
    ConfigProblem,
    check_file,
    example_toml,
    load_settings,
    settings_to_dict,
    settings_to_toml,
)
from hato.config._settings import (
    RULE_FLAGS,
    AccessRule,
    AccountsSettings,
    AuthSettings,
    BareNewline,
    DnsSettings,
    DsnSettings,
    HostPort,
    ListenAddress,
    LogLevel,
    LogSettings,
    PolicySettings,
    QueueSettings,
    QuotaAction,
    RelaySettings,
    RuleAction,
    SenderLoginMatch,
    ServerSettings,
    Settings,
    SmtpSettings,
    SpoolSettings,
    SyncMode,
    TlsPolicy,
    TlsPolicyEntry,
    TlsSettings,
    TraceSettings,
    Transport,
)

__all__ = [
    "MASKED",
    "RULE_FLAGS",
    "AccessRule",
    "AccountsSettings",
    "AuthSettings",
    "BareNewline",
    "ConfigError",
    "ConfigProblem",
    "DnsSettings",
    "DsnSettings",
    "HostPort",
    "ListenAddress",
    "LogLevel",
    "LogSettings",
    "PolicySettings",
    "QueueSettings",
    "QuotaAction",
    "RelaySettings",
    "RuleAction",
    "SenderLoginMatch",
    "ServerSettings",
    "Settings",
    "SmtpSettings",
    "SpoolSettings",
    "SyncMode",
    "TlsPolicy",
    "TlsPolicyEntry",
    "TlsSettings",
    "TraceSettings",
    "Transport",
    "check_file",
    "example_toml",
    "hostname_warning",
    "is_fully_qualified",
    "load_settings",
    "settings_to_dict",
    "settings_to_toml",
]
