"""``Reply``: the wire format of replies (RFC 5321 4.2, RFC 2034) and what it refuses."""

from __future__ import annotations

import pytest

from hato.smtp import Reply, help_reply, reply


def test_single_line() -> None:
    assert reply(250, "2.1.0", "Ok").to_bytes() == b"250 2.1.0 Ok\r\n"
    assert reply(354, None, "Go ahead").to_bytes() == b"354 Go ahead\r\n"


def test_multi_line_carries_code_and_enhanced_code_on_every_line() -> None:
    answer = reply(550, "5.7.1", "first", "second", "third")
    assert answer.to_bytes() == (b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n")
    assert answer.text == "first\nsecond\nthird"
    assert str(answer) == "550-5.7.1 first / 550-5.7.1 second / 550 5.7.1 third"


def test_multi_line_without_enhanced_code() -> None:
    ehlo = Reply(250, None, ("mx.example.test", "PIPELINING", "HELP"))
    assert ehlo.to_bytes() == b"250-mx.example.test\r\n250-PIPELINING\r\n250 HELP\r\n"


def test_empty_text_line() -> None:
    assert reply(334, None, "").to_bytes() == b"334 \r\n"


def test_utf8_text() -> None:
    assert reply(250, "2.0.0", "Grüße").to_bytes() == "250 2.0.0 Grüße\r\n".encode()


@pytest.mark.parametrize(
    ("code", "positive", "transient", "permanent"),
    [
        (220, True, False, False),
        (354, True, False, False),
        (451, False, True, False),
        (554, False, False, True),
    ],
)
def test_classes(code: int, positive: bool, transient: bool, permanent: bool) -> None:
    answer = reply(code, None, "x")
    assert (answer.is_positive, answer.is_transient, answer.is_permanent) == (
        positive,
        transient,
        permanent,
    )


@pytest.mark.parametrize(
    ("code", "enhanced", "lines"),
    [
        (250, "5.0.0", ("Ok",)),  # enhanced class does not fit the code
        (550, "2.1.0", ("No",)),
        (450, "5.7.1", ("Later",)),
        (250, "2.0", ("Ok",)),  # class.subject.detail needs three parts
        (250, "2.0.0.0", ("Ok",)),
        (199, None, ("x",)),
        (600, None, ("x",)),
        (250, None, ()),
        (250, None, ("one\r\n250 two",)),  # no way to inject a second reply line
        (250, None, ("bare\nLF",)),
        (250, None, ("bare\rCR",)),
    ],
)
def test_bad_replies_are_refused(code: int, enhanced: str | None, lines: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Reply(code, enhanced, lines)


def test_replies_are_frozen() -> None:
    answer = reply(250, "2.0.0", "Ok")
    with pytest.raises(AttributeError):
        answer.code = 550  # type: ignore[misc]


def test_help_reply_topics() -> None:
    assert help_reply("rcpt").to_bytes().startswith(b"214 2.0.0 RCPT TO:<recipient@domain>")
    unknown = help_reply("X\x00Y" + "z" * 40)
    assert unknown.code == 504
    assert unknown.lines == ('HELP topic unknown: "X?Y' + "z" * 29 + '"',)
