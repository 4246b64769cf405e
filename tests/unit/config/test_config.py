"""hato.config: TOML into frozen settings, every problem named by its key."""

from __future__ import annotations

import dataclasses
import json
import socket
import tomllib
import typing
from pathlib import Path

import pytest

from hato.config import (
    BareNewline,
    ConfigError,
    ConfigProblem,
    ListenAddress,
    LogLevel,
    LogSettings,
    ServerSettings,
    Settings,
    SmtpSettings,
    SpoolSettings,
    SyncMode,
    check_file,
    example_toml,
    load_settings,
    settings_to_dict,
    settings_to_toml,
    settings_warnings,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "hato.example.toml"
SECTIONS = typing.get_type_hints(Settings)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hato.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    return list(caught.value.problems)


# --- Defaults --------------------------------------------------------------------------------


def test_defaults_are_the_documented_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    hostname = socket.getfqdn().lower().rstrip(".")
    assert settings.server == ServerSettings(
        hostname=hostname,
        listen=(ListenAddress("127.0.0.1", 2525),),
        data_dir=tmp_path / "hato-data",
        local_domains=tuple(dict.fromkeys(("localhost", hostname))),
        reverse_dns=True,
        shutdown_grace=30.0,
    )
    assert settings.smtp == SmtpSettings(
        max_message_size=67108864,
        max_command_line=512,
        max_text_line=1000,
        max_recipients=100,
        max_errors=20,
        junk_command_limit=100,
        idle_timeout=300.0,
        bare_newline=BareNewline.REJECT,
    )
    assert settings.spool == SpoolSettings(sync=SyncMode.AUTO, max_batch=256)
    assert settings.log == LogSettings(
        level=LogLevel.INFO, events_file=tmp_path / "hato-data" / "log" / "events.jsonl"
    )


def test_dataclass_defaults_agree_with_an_empty_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.smtp == SmtpSettings()
    assert settings.spool == SpoolSettings()
    assert settings.server.listen == ServerSettings.__dataclass_fields__["listen"].default


def test_settings_are_frozen() -> None:
    settings = load_settings(overrides={"server.hostname": "mx.example"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.smtp.max_recipients = 5  # type: ignore[misc]


def test_enum_settings_are_members_that_compare_as_text(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, '[smtp]\nbare_newline = "normalize"\n[spool]\nsync = "fsync"\n')
    )
    assert settings.smtp.bare_newline is BareNewline.NORMALIZE
    assert settings.spool.sync == "fsync"


def test_an_integer_is_taken_for_a_float_setting(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[server]\nshutdown_grace = 5\n"))
    assert settings.server.shutdown_grace == 5.0
    assert type(settings.server.shutdown_grace) is float


# --- One problem each, under its key ---------------------------------------------------------

RCPT_RULE = '[[policy.rcpt]]\naction = "reject"\nrecipient = '
ERROR_CASES = [
    ("int-is-bool", "[smtp]\nmax_recipients = true", "smtp.max_recipients", "got a boolean"),
    ("int-is-str", '[smtp]\nmax_errors = "20"', "smtp.max_errors", "expected an integer"),
    ("int-is-float", "[spool]\nmax_batch = 2.5", "spool.max_batch", "expected an integer"),
    ("size-zero", "[smtp]\nmax_message_size = 0", "smtp.max_message_size", "greater than 0"),
    ("command-short", "[smtp]\nmax_command_line = 511", "smtp.max_command_line", "at least 512"),
    ("text-short", "[smtp]\nmax_text_line = 999", "smtp.max_text_line", "at least 1000"),
    ("rcpt-zero", "[smtp]\nmax_recipients = 0", "smtp.max_recipients", "at least 1"),
    ("errors-zero", "[smtp]\nmax_errors = 0", "smtp.max_errors", "at least 1"),
    ("batch-zero", "[spool]\nmax_batch = 0", "spool.max_batch", "at least 1"),
    ("idle-zero", "[smtp]\nidle_timeout = 0", "smtp.idle_timeout", "greater than 0"),
    ("idle-nan", "[smtp]\nidle_timeout = nan", "smtp.idle_timeout", "finite"),
    ("idle-inf", "[smtp]\nidle_timeout = inf", "smtp.idle_timeout", "finite"),
    ("idle-bool", "[smtp]\nidle_timeout = false", "smtp.idle_timeout", "got a boolean"),
    ("grace-negative", "[server]\nshutdown_grace = -1", "server.shutdown_grace", "at least 0"),
    ("bool-is-int", "[server]\nreverse_dns = 1", "server.reverse_dns", "expected true or false"),
    ("bool-is-str", '[server]\nreverse_dns = "yes"', "server.reverse_dns", "true or false"),
    ("newline-enum", '[smtp]\nbare_newline = "strip"', "smtp.bare_newline", '"normalize"'),
    ("sync-enum", '[spool]\nsync = "never"', "spool.sync", 'one of "auto", "syncfs", "fsync"'),
    ("level-enum", '[log]\nlevel = "trace"', "log.level", '"debug", "info", "warning"'),
    ("level-case", '[log]\nlevel = "INFO"', "log.level", 'got "INFO"'),
    ("level-int", "[log]\nlevel = 10", "log.level", "expected a string"),
    (
        "tls-cert-missing",
        '[tls]\ncertificate = "/nonexistent/c.pem"',
        "tls.certificate",
        "cannot read",
    ),
    ("tls-cert-not-pem", '[tls]\ncertificate = "/dev/null"', "tls.certificate", "no PEM"),
    ("tls-key-alone", '[tls]\nkey = "/dev/null"', "tls.key", "no PEM private key"),
    ("tls-starttls", '[tls]\nstarttls = "yes"', "tls.starttls", "true or false"),
    (
        "implicit-tls-name",
        '[server]\nimplicit_tls_listen = ["localhost:465"]',
        "server.implicit_tls_listen[0]",
        "not an IP",
    ),
    ("listen-str", '[server]\nlisten = "127.0.0.1:25"', "server.listen", "expected an array"),
    ("listen-empty", "[server]\nlisten = []", "server.listen", "at least one"),
    ("listen-int", "[server]\nlisten = [25]", "server.listen[0]", "expected a string"),
    ("listen-name", '[server]\nlisten = ["localhost:25"]', "server.listen[0]", "not an IP"),
    ("listen-v6-bare", '[server]\nlisten = ["::1:25"]', "server.listen[0]", "needs brackets"),
    ("listen-v4-bracket", '[server]\nlisten = ["[127.0.0.1]:25"]', "server.listen[0]", "IPv6"),
    ("listen-noport", '[server]\nlisten = ["127.0.0.1"]', "server.listen[0]", "has no port"),
    ("listen-v6-noport", '[server]\nlisten = ["[::1]"]', "server.listen[0]", "[IPV6]:PORT"),
    ("listen-big-port", '[server]\nlisten = ["127.0.0.1:65536"]', "server.listen[0]", "65535"),
    ("listen-sign", '[server]\nlisten = ["127.0.0.1:+25"]', "server.listen[0]", "not a number"),
    ("listen-nohost", '[server]\nlisten = [":25"]', "server.listen[0]", "no address"),
    (
        "listen-second-bad",
        '[server]\nlisten = ["127.0.0.1:25", "nowhere:25"]',
        "server.listen[1]",
        "not an IP",
    ),
    (
        "listen-twice",
        '[server]\nlisten = ["[::1]:25", "[0:0::1]:25"]',
        "server.listen[1]",
        "same as server.listen[0]",
    ),
    ("host-int", "[server]\nhostname = 1", "server.hostname", "expected a string"),
    ("host-underscore", '[server]\nhostname = "mx_1.example"', "server.hostname", '"mx_1"'),
    ("host-dot", '[server]\nhostname = "mx.example."', "server.hostname", "final dot"),
    ("host-ip", '[server]\nhostname = "192.0.2.1"', "server.hostname", "IP address"),
    ("host-long-label", f'[server]\nhostname = "{"a" * 64}.example"', "server.hostname", ""),
    ("host-hyphen", '[server]\nhostname = "-mx.example"', "server.hostname", "hyphens"),
    ("domains-str", '[server]\nlocal_domains = "a.example"', "server.local_domains", "array"),
    ("domains-empty", '[server]\nlocal_domains = ["a.example", ""]', "server.local_domains[1]", ""),
    ("domains-idn-bad", '[server]\nlocal_domains = ["a..example"]', "server.local_domains[0]", ""),
    ("data-dir-empty", '[server]\ndata_dir = ""', "server.data_dir", "must name a directory"),
    ("data-dir-int", "[server]\ndata_dir = 1", "server.data_dir", "expected a string"),
    ("events-int", "[log]\nevents_file = 1", "log.events_file", "expected a string"),
    ("events-nul", '[log]\nevents_file = "a\\u0000b"', "log.events_file", "NUL"),
    ("unknown-section", "[bogus]\nx = 1", "bogus", "unknown section"),
    # Above every [section] header a key is top-level: it is named with the section it is of.
    ("unknown-top-key", "hostname = 'x'", "hostname", "did you mean server.hostname (under"),
    ("top-key-typo", "hostnme = 'x'", "hostnme", "did you mean server.hostname"),
    ("key-in-wrong-section", "[smtp]\nlocal_domains = []", "smtp.local_domains", "server."),
    ("pattern-at-at", RCPT_RULE + '["@@"]', "policy.rcpt[0].recipient[0]", "no local part"),
    ("pattern-two-ats", RCPT_RULE + '["a@@b.example"]', "policy.rcpt[0].recipient[0]", '"a@"'),
    ("pattern-route", RCPT_RULE + '["@r.example:u@b.example"]', "policy.rcpt[0].recipient[0]", ""),
    ("postmaster-bad", '[accounts]\npostmaster = "@@"', "accounts.postmaster", "not an address"),
    ("postmaster-no-at", '[accounts]\npostmaster = "root"', "accounts.postmaster", ""),
    ("unknown-key", "[smtp]\nmax_recipient = 5", "smtp.max_recipient", "unknown key"),
    ("unknown-subtable", "[server.tls]\ncert = 'x'", "server.tls", "unknown key"),
    ("section-not-table", "server = 5", "server", "expected a table"),
]


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_each_problem_is_reported_under_its_key(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    problems = problems_of(tmp_path, text)
    assert [problem.key for problem in problems] == [key]
    assert fragment in problems[0].message


def test_unknown_key_suggests_the_near_one(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "[smtp]\nmax_recipient = 5")
    assert problem.message == 'unknown key (did you mean "max_recipients"?)'


# --- Problems with the file as a whole -------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "absent.toml")
    (problem,) = caught.value.problems
    assert problem.key == ""
    assert "cannot read" in problem.message
    assert "absent.toml" in problem.message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert [p.key for p in caught.value.problems] == [""]


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "[smtp]\nmax_errors = \n")
    assert problem.key == ""
    assert "invalid TOML" in problem.message
    assert "line 2, column 14" in problem.message


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "hato.toml"
    path.write_bytes(b'[server]\nhostname = "\xff"\n')
    problems = check_file(path)
    assert [p.key for p in problems] == [""]
    assert "not UTF-8 (at line 2)" in problems[0].message


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "hato.toml"
    path.write_bytes(b"\xef\xbb\xbf[smtp]\nmax_errors = 3\n")
    assert load_settings(path).smtp.max_errors == 3


# --- Every problem at once -------------------------------------------------------------------


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    text = """
[server]
listen = ["127.0.0.1:25", "bad", 7]
reverse_dns = "no"

[smtp]
max_recipients = 0
max_text_line = true
colour = "blue"

[spool]
sync = "sometimes"

[extra]
"""
    problems = problems_of(tmp_path, text)
    assert {p.key for p in problems} == {
        "extra",
        "server.listen[1]",
        "server.listen[2]",
        "server.reverse_dns",
        "smtp.max_recipients",
        "smtp.max_text_line",
        "smtp.colour",
        "spool.sync",
    }
    assert len(problems) == 8


def test_config_error_lists_one_problem_per_line() -> None:
    error = ConfigError(
        [ConfigProblem("smtp.max_errors", "must be at least 1"), ConfigProblem("", "whole file")]
    )
    assert str(error) == "smtp.max_errors: must be at least 1\nwhole file"
    assert error.problems[0] == ConfigProblem("smtp.max_errors", "must be at least 1")


# --- Overrides -------------------------------------------------------------------------------


def test_overrides_replace_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhostname = "file.example"\n[smtp]\nmax_errors = 3\n')
    settings = load_settings(
        path,
        overrides={
            "server.hostname": "mx.example",
            "server.listen": ["127.0.0.1:0", "[::1]:0"],
            "server.data_dir": str(tmp_path / "data"),
            "log.level": "debug",
        },
    )
    assert settings.server.hostname == "mx.example"
    assert settings.server.local_domains == ("localhost", "mx.example")
    assert settings.server.listen == (ListenAddress("127.0.0.1", 0), ListenAddress("::1", 0))
    assert settings.server.data_dir == tmp_path / "data"
    assert settings.log.level is LogLevel.DEBUG
    assert settings.smtp.max_errors == 3


def test_overrides_apply_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(overrides={"server.data_dir": tmp_path, "smtp.max_errors": 7})
    assert settings.server.data_dir == tmp_path
    assert settings.smtp.max_errors == 7


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[smtp]\nmax_errors = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(
            path,
            overrides={
                "smtp.max_recipients": True,
                "server.nope": 1,
                "nosection": 1,
                "server.listen": ("127.0.0.1:25", "x"),
            },
        )
    assert {p.key: p.message for p in caught.value.problems} == {
        "smtp.max_errors": "must be at least 1, got 0",
        "smtp.max_recipients": "expected an integer, got a boolean (true)",
        "server.nope": "unknown key",
        "nosection": 'an override needs the form "section.key"',
        "server.listen[1]": '"x" has no port; write "ADDR:PORT"',
    }


# --- Listen addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("127.0.0.1:2525", "127.0.0.1", 2525, "127.0.0.1:2525"),
        ("0.0.0.0:25", "0.0.0.0", 25, "0.0.0.0:25"),
        ("[::1]:2525", "::1", 2525, "[::1]:2525"),
        ("[::]:0", "::", 0, "[::]:0"),
        ("[2001:DB8:0::1]:587", "2001:db8::1", 587, "[2001:db8::1]:587"),
        ("[::ffff:192.0.2.1]:25", "::ffff:c000:201", 25, "[::ffff:c000:201]:25"),
    ],
)
def test_listen_address_parsing(text: str, host: str, port: int, shown: str) -> None:
    address = ListenAddress.parse(text)
    assert (address.host, address.port) == (host, port)
    assert str(address) == shown
    assert ListenAddress.parse(str(address)) == address


def test_ipv6_listen_from_file(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, '[server]\nhostname = "mx.example"\nlisten = ["[::1]:2525", "[::1]:0"]\n')
    )
    assert settings.server.listen == (ListenAddress("::1", 2525), ListenAddress("::1", 0))


def test_port_zero_may_repeat(tmp_path: Path) -> None:
    settings = load_settings(overrides={"server.listen": ["127.0.0.1:0", "127.0.0.1:0"]})
    assert len(settings.server.listen) == 2


@pytest.mark.parametrize(("host", "port"), [("[::1]", 25), ("localhost", 25), ("::1", 65536)])
def test_listen_address_checks_itself(host: str, port: int) -> None:
    with pytest.raises(ValueError):
        ListenAddress(host, port)


# --- Paths -----------------------------------------------------------------------------------


def test_relative_data_dir_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(write(tmp_path, '[server]\ndata_dir = "var/hato"\n'))
    assert settings.server.data_dir == tmp_path / "var" / "hato"
    assert settings.server.data_dir.is_absolute()
    assert settings.log.events_file == tmp_path / "var" / "hato" / "log" / "events.jsonl"


def test_absolute_data_dir_and_events_file_stay(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={"server.data_dir": "/srv/hato", "log.events_file": str(tmp_path / "ev.jsonl")}
    )
    assert settings.server.data_dir == Path("/srv/hato")
    assert settings.log.events_file == tmp_path / "ev.jsonl"


def test_empty_events_file_disables_it() -> None:
    settings = load_settings(overrides={"log.events_file": ""})
    assert settings.log.events_file is None


# --- Domains ---------------------------------------------------------------------------------


def test_idn_local_domains_become_lowercase_a_labels(tmp_path: Path) -> None:
    text = '[server]\nlocal_domains = ["Bücher.Example", "EXAMPLE.org", "example.org"]\n'
    settings = load_settings(write(tmp_path, text))
    assert settings.server.local_domains == ("xn--bcher-kva.example", "example.org")


def test_idn_hostname_becomes_a_label_and_joins_default_local_domains() -> None:
    settings = load_settings(overrides={"server.hostname": "MX.Bücher.Example"})
    assert settings.server.hostname == "mx.xn--bcher-kva.example"
    assert settings.server.local_domains == ("localhost", "mx.xn--bcher-kva.example")


def test_localhost_hostname_is_not_listed_twice() -> None:
    settings = load_settings(overrides={"server.hostname": "localhost"})
    assert settings.server.local_domains == ("localhost",)


def test_empty_hostname_means_the_machine_name() -> None:
    settings = load_settings(overrides={"server.hostname": ""})
    assert settings.server.hostname == socket.getfqdn().lower().rstrip(".")
    assert settings.server.hostname


# --- Writing back ----------------------------------------------------------------------------


def custom_settings(tmp_path: Path) -> Settings:
    return Settings(
        server=ServerSettings(
            hostname="mx.xn--bcher-kva.example",
            listen=(ListenAddress("::1", 25), ListenAddress("0.0.0.0", 0)),
            data_dir=tmp_path / 'odd "dir"\\ü\ttab',
            local_domains=("example.org", "xn--bcher-kva.example"),
            reverse_dns=False,
            shutdown_grace=0.5,
        ),
        smtp=SmtpSettings(
            max_message_size=1,
            max_command_line=2048,
            max_text_line=1000,
            max_recipients=1,
            max_errors=1,
            idle_timeout=1e-3,
            bare_newline=BareNewline.NORMALIZE,
        ),
        spool=SpoolSettings(sync=SyncMode.SYNCFS, max_batch=1),
        log=LogSettings(level=LogLevel.ERROR, events_file=None),
    )


def test_settings_to_toml_round_trips(tmp_path: Path) -> None:
    settings = custom_settings(tmp_path)
    assert load_settings(write(tmp_path, settings_to_toml(settings))) == settings


def test_settings_to_toml_round_trips_loaded_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    again = load_settings(write(tmp_path, settings_to_toml(settings)))
    assert again == settings
    assert again.log.events_file is not None


def test_settings_to_dict_is_json_and_matches_the_toml(tmp_path: Path) -> None:
    settings = custom_settings(tmp_path)
    as_dict = settings_to_dict(settings)
    assert json.loads(json.dumps(as_dict)) == tomllib.loads(settings_to_toml(settings))
    assert as_dict["server"]["listen"] == ["[::1]:25", "0.0.0.0:0"]
    assert as_dict["log"]["events_file"] == ""
    assert as_dict["spool"]["sync"] == "syncfs"


# --- The example file ------------------------------------------------------------------------


def test_example_file_is_generated_from_the_field_docs() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == example_toml(), (
        "hato.example.toml drifted from the field docs; regenerate it with\n"
        "python -c 'import hato.config as c; print(c.example_toml(), end=\"\")'"
        " > hato.example.toml"
    )


def test_example_file_documents_every_field() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    parsed = tomllib.loads(text)
    assert list(parsed) == list(SECTIONS)
    for section, cls in SECTIONS.items():
        names = [f.name for f in dataclasses.fields(cls)]
        assert list(parsed[section]) == names
        for f in dataclasses.fields(cls):
            doc = f.metadata["doc"]
            assert doc.strip()
            # The comment just above the key (in its own section) starts with the field's doc.
            own = text.split(f"\n[{section}]\n", 1)[1]
            before = own.split(f"\n{f.name} = ", 1)[0]
            assert "# " + doc.split()[0] in before.rsplit("\n\n", 1)[-1]


def test_example_file_loads_to_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(EXAMPLE) == load_settings()
    assert check_file(EXAMPLE) == []


def test_check_file_returns_problems_instead_of_raising(tmp_path: Path) -> None:
    problems = check_file(write(tmp_path, "[log]\nlevel = 1\n"))
    assert problems == [ConfigProblem("log.level", "expected a string, got an integer (1)")]


def test_tls_settings(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n")
    key = tmp_path / "k.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n")
    settings = load_settings(write(tmp_path, "[server]\nimplicit_tls_listen = []\n"))
    assert settings.server.implicit_tls_listen == ()
    assert (settings.tls.certificate, settings.tls.key, settings.tls.starttls) == (None, None, True)
    default = load_settings()
    assert default.server.implicit_tls_listen == (ListenAddress("127.0.0.1", 2465),)
    text = f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\nstarttls = false\n'
    settings = load_settings(write(tmp_path, text))
    assert (settings.tls.certificate, settings.tls.key, settings.tls.starttls) == (cert, key, False)
    assert [p.key for p in problems_of(tmp_path, f'[tls]\nkey = "{key}"')] == ["tls.key"]


def test_address_patterns_that_are_addresses_load(tmp_path: Path) -> None:
    path = tmp_path / "hato.toml"
    path.write_text(RCPT_RULE + '["u@b.example", "\\"a@b\\"@b.example", "u@", "<>", ".b.example"]')
    (rule,) = load_settings(path).policy.rcpt
    assert rule.recipient == ("u@b.example", '"a@b"@b.example', "u@", "<>", ".b.example")
    path.write_text('[accounts]\npostmaster = "root@localhost"')
    assert load_settings(path).accounts.postmaster == "root@localhost"


def test_relay_open_to_the_world_is_a_warning() -> None:
    named = {"server.hostname": "mx.example.com"}  # the machine's own name may be warned of
    assert settings_warnings(load_settings(overrides=named)) == []
    wide = ["0.0.0.0/0", "::/0", "10.0.0.0/8", "8.0.0.0/6", "2001:db8::/32", "2000::/3"]
    found = settings_warnings(load_settings(overrides={**named, "relay.trusted_networks": wide}))
    assert [w.key for w in found] == [
        "relay.trusted_networks[0]",
        "relay.trusted_networks[1]",
        "relay.trusted_networks[3]",
        "relay.trusted_networks[5]",
    ]
    assert "OPEN RELAY" in found[0].message and "OPEN RELAY" in found[1].message
    assert "67,108,864 addresses" in found[2].message


def test_a_hostname_that_is_not_fully_qualified_is_a_warning() -> None:
    (found,) = settings_warnings(load_settings(overrides={"server.hostname": "mail"}))
    assert found.key == "server.hostname" and "fully qualified" in found.message
