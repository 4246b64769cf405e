"""Hato's configuration: one TOML file read at start-up into frozen, typed settings.

What this package promises:

- Settings that need a restart live in the file; domains, users and aliases live in the store
  and change while Hato runs, so they are not here.
- ``load_settings`` returns a complete ``Settings`` or raises ``ConfigError`` listing every
  problem, each under the dotted key it concerns (``smtp.max_recipients``,
  ``server.listen[1]``); nothing half-valid is ever returned.
- Loaded settings need no further interpretation: the hostname and local domains are filled
  in, domains are lowercase A-labels, and data_dir and events_file are absolute paths.
- Each setting is documented once, on its dataclass field; ``example_toml`` (the text of
  hato.example.toml) and ``settings_to_toml`` are written from those documents.
"""

from hato.config._load import (
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
    FilterFailure,
    ListenAddress,
    LogLevel,
    LogSettings,
    PipelineSettings,
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
    TlsSettings,
    TraceSettings,
)

__all__ = [
    "RULE_FLAGS",
    "AccessRule",
    "AccountsSettings",
    "AuthSettings",
    "BareNewline",
    "ConfigError",
    "ConfigProblem",
    "DnsSettings",
    "DsnSettings",
    "FilterFailure",
    "ListenAddress",
    "LogLevel",
    "LogSettings",
    "PipelineSettings",
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
    "TlsSettings",
    "TraceSettings",
    "check_file",
    "example_toml",
    "load_settings",
    "settings_to_dict",
    "settings_to_toml",
]
