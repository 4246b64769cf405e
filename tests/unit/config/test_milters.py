"""[[pipeline.milters]]: the README's example loads, every mistake names its key, and the
settings written back read the same."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hato.config import ConfigError, MilterSocket, load_settings, settings_to_toml
from hato.milter import DEFAULT_MACROS

README = Path(__file__).resolve().parents[3] / "README.md"


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "hato.toml"
    path.write_text(text)
    return load_settings(path)


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    return {p.key: p.message for p in error.value.problems}


def readme_toml(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(section)
    end = text.index("\n## ", start + len(section))
    return re.findall(r"```toml\n(.*?)```", text[start:end], re.S)


def test_the_readme_example_loads(tmp_path: Path) -> None:
    [example] = readme_toml("## Milters")
    [milter] = load(tmp_path, example).pipeline.milters
    assert milter.name == "rspamd"
    assert milter.socket == MilterSocket("inet", host="127.0.0.1", port=11332)
    assert milter.listeners == ("smtp", "submission", "implicit_tls")
    assert str(milter.default_action) == "tempfail"
    assert (milter.connect_timeout, milter.command_timeout, milter.message_timeout) == (30, 30, 300)
    assert dict(milter.macros) == DEFAULT_MACROS


def test_the_rspamd_and_opendkim_examples_load(tmp_path: Path) -> None:
    examples = readme_toml("### rspamd as a milter")  # to the next section: OpenDKIM too
    loaded = [load(tmp_path, example).pipeline.milters[0] for example in examples]
    assert [m.name for m in loaded] == ["rspamd", "opendkim"]
    assert loaded[1].listeners == ("submission", "implicit_tls", "local")


@pytest.mark.parametrize(
    ("socket", "expected"),
    [
        ("inet:[::1]:8891", MilterSocket("inet", host="::1", port=8891)),
        ("inet:localhost:8891", MilterSocket("inet", host="localhost", port=8891)),
        ("unix:/run/milter.sock", MilterSocket("unix", path="/run/milter.sock")),
    ],
)
def test_sockets(tmp_path: Path, socket: str, expected: MilterSocket) -> None:
    text = f'[[pipeline.milters]]\nname = "m"\nsocket = "{socket}"\n'
    found = load(tmp_path, text).pipeline.milters[0].socket
    assert found == expected and str(found) == socket


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ('socket = "tcp:1.2.3.4:1"', "pipeline.milters[0].socket", "inet:HOST:PORT"),
        ('socket = "unix:run/m.sock"', "pipeline.milters[0].socket", "absolute path"),
        ('socket = "inet:127.0.0.1"', "pipeline.milters[0].socket", "port"),
        (
            'socket = "inet:1.2.3.4:1"\nlisteners = ["pickup"]',
            "pipeline.milters[0].listeners[0]",
            '"local"',
        ),
        (
            'socket = "inet:1.2.3.4:1"\nlisteners = []',
            "pipeline.milters[0].listeners",
            "at least one",
        ),
        (
            'socket = "inet:1.2.3.4:1"\ndefault_action = "reject"',
            "pipeline.milters[0].default_action",
            "tempfail",
        ),
        (
            'socket = "inet:1.2.3.4:1"\ncommand_timeout = 0',
            "pipeline.milters[0].command_timeout",
            "greater than 0",
        ),
        ('socket = "inet:1.2.3.4:1"\nsokcet = 1', "pipeline.milters[0].sokcet", "did you mean"),
        (
            'socket = "inet:1.2.3.4:1"\nmacros = { connct = ["j"] }',
            "pipeline.milters[0].macros.connct",
            "unknown key",
        ),
        (
            'socket = "inet:1.2.3.4:1"\nmacros = { mail = ["{bad name}"] }',
            "pipeline.milters[0].macros.mail[0]",
            "macro",
        ),
        ("", "pipeline.milters[0].socket", "missing"),
    ],
)
def test_each_mistake_names_its_key(tmp_path: Path, body: str, key: str, words: str) -> None:
    found = problems(tmp_path, f'[[pipeline.milters]]\nname = "m"\n{body}\n')
    assert key in found, found
    assert words in found[key]


def test_names_are_unique_and_given(tmp_path: Path) -> None:
    text = '[[pipeline.milters]]\nname = "a"\nsocket = "inet:1.2.3.4:1"\n' * 2
    assert "is taken" in problems(tmp_path, text)["pipeline.milters[1].name"]
    found = problems(tmp_path, '[[pipeline.milters]]\nsocket = "inet:1.2.3.4:1"\n')
    assert found["pipeline.milters[0].name"] == "missing"


def test_settings_written_back_read_the_same(tmp_path: Path) -> None:
    text = (
        '[[pipeline.milters]]\nname = "a"\nsocket = "inet:[::1]:1"\nlisteners = ["local"]\n'
        'default_action = "accept"\nmacros = { mail = ["i", "{mail_addr}"] }\n'
        '[[pipeline.milters]]\nname = "b"\nsocket = "unix:/run/b.sock"\n'
    )
    settings = load(tmp_path, text)
    again = load(tmp_path, settings_to_toml(settings))
    assert again == settings
    assert again.pipeline.milters[0].macros == (("mail", ("i", "{mail_addr}")),)
