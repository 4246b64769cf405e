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

from hato.config._diff import changed_keys, with_keys
from hato.config._hostname import hostname_warning, is_fully_qualified
from hato.config._load import (
    MASKED,
    ConfigError,
    ConfigProblem,
    check_file,
    example_toml,
    file_warnings,
    load_settings,
    settings_to_dict,
    settings_to_toml,
    settings_warnings,
)
from hato.config._record import (
    SERVER_RECORD,
    ServerRecord,
    read_server_record,
    write_server_record,
)
from hato.config._settings import (
    RULE_AUTH_CONDITIONS,
    RULE_FLAGS,
    RULE_SPF_RESULTS,
    RULE_SPF_STAGES,
    AccessRule,
    AccountsSettings,
    AuthSettings,
    BareNewline,
    DkimSettings,
    DnsSettings,
    DsnSettings,
    FilterFailure,
    HostPort,
    ListenAddress,
    LogLevel,
    LogSettings,
    MailAuthSettings,
    MetricsSettings,
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
    TlsPolicyEntry,
    TlsSettings,
    TraceSettings,
    Transport,
    WebSettings,
)

__all__ = [
    "MASKED",
    "RULE_AUTH_CONDITIONS",
    "RULE_FLAGS",
    "RULE_SPF_RESULTS",
    "RULE_SPF_STAGES",
    "SERVER_RECORD",
    "AccessRule",
    "AccountsSettings",
    "AuthSettings",
    "BareNewline",
    "ConfigError",
    "ConfigProblem",
    "DkimSettings",
    "DnsSettings",
    "DsnSettings",
    "FilterFailure",
    "HostPort",
    "ListenAddress",
    "LogLevel",
    "LogSettings",
    "MailAuthSettings",
    "MetricsSettings",
    "PipelineSettings",
    "PolicySettings",
    "QueueSettings",
    "QuotaAction",
    "RelaySettings",
    "RuleAction",
    "SenderLoginMatch",
    "ServerRecord",
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
    "WebSettings",
    "changed_keys",
    "check_file",
    "example_toml",
    "file_warnings",
    "hostname_warning",
    "is_fully_qualified",
    "load_settings",
    "read_server_record",
    "settings_to_dict",
    "settings_to_toml",
    "settings_warnings",
    "with_keys",
    "write_server_record",
]
