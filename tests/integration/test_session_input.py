"""Whatever a client sends, a real ``hato serve`` answers it as a protocol matter: a clear
refusal and a session that goes on, never ``421 4.3.0 internal server error``.

Named cases first (domains the account store cannot read, a CR inside the HELO name), then
Hypothesis sending arbitrary command lines over real sockets.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import HatoProcess, SmtpLineClient

INTERNAL_ERROR = "421 4.3.0"
USER, PASSWORD = "alice@localhost", "open sesame"
# Outside clients, and trusted ones, which may relay, so their recipients go further in.
TRUST = {
    "outside": "relay.trusted_networks=[]",
    "trusted": 'relay.trusted_networks=["127.0.0.0/8"]',
}
# AUTH offered without TLS, every failure answered at once and never a ban, errors never
# ending a session: so that every command a client may send is reached and answered.
OPEN_DOORS = (
    "auth.allow_plaintext=true",
    "auth.failure_delay=0",
    "auth.max_failures=1000000",
    "smtp.max_errors=1000000",
)


@pytest.fixture(scope="module", params=sorted(TRUST))
def server(
    request: pytest.FixtureRequest, module_hato_factory: Callable[..., HatoProcess]
) -> HatoProcess:
    hato = module_hato_factory(request.param, TRUST[request.param], *OPEN_DOORS)
    hato.add_user(USER, PASSWORD)
    return hato


def trusted(hato: HatoProcess) -> bool:
    return "trusted" in hato.data_dir.parent.name


def connect(hato: HatoProcess, smtp_connect: Callable[[int], SmtpLineClient]) -> SmtpLineClient:
    client = smtp_connect(hato.port)
    assert client.read_reply()[0].startswith("220 ")
    return client


# -- named cases -------------------------------------------------------------------------

BAD_DOMAINS = ["127.0.0.1", "1.2", "a.123", "xn--zz.test", "l" * 70 + ".example"]


def test_a_domain_the_store_cannot_read_is_a_syntax_error(
    server: HatoProcess, smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    client = connect(server, smtp_connect)
    assert client.reply("EHLO client.example") == "250 HELP"
    for domain in BAD_DOMAINS:
        answer = client.reply(f"MAIL FROM:<u@{domain}>")
        assert answer.startswith("501 5.1.7 Bad sender address syntax ("), (domain, answer)
        assert client.reply("MAIL FROM:<>") == "250 2.1.0 Ok"
        answer = client.reply(f"RCPT TO:<u@{domain}>")
        assert answer.startswith("501 5.1.3 Bad recipient address syntax ("), (domain, answer)
        assert client.reply("NOOP") == "250 2.0.0 Ok"
        assert client.reply("RCPT TO:<postmaster@localhost>") == "250 2.1.5 Ok"
        assert client.reply("RSET") == "250 2.0.0 Ok"


def test_an_address_literal_is_valid_syntax(
    server: HatoProcess, smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    client = connect(server, smtp_connect)
    assert client.reply("EHLO client.example") == "250 HELP"
    assert client.reply("MAIL FROM:<u@[127.0.0.1]>") == "250 2.1.0 Ok"
    answer = client.reply("RCPT TO:<u@[127.0.0.1]>")
    if trusted(server):
        assert answer == "250 2.1.5 Ok"
    else:
        assert answer == "554 5.7.1 <u@[127.0.0.1]>: Relay access denied"


def test_a_cr_in_the_helo_name_is_a_syntax_error(
    server: HatoProcess, smtp_connect: Callable[[int], SmtpLineClient]
) -> None:
    client = connect(server, smtp_connect)
    for verb in ("EHLO", "HELO"):
        for name in (b"a\rb", b"\rb", b"a\r\r"):
            client.send(verb.encode() + b" " + name + b"\r\n")
            assert client.read_reply() == [f"501 5.5.4 Syntax: {verb} hostname"], name
            assert client.reply("NOOP") == "250 2.0.0 Ok"
        assert client.reply(f"{verb} client.example").startswith("250")


@pytest.mark.parametrize("login", [f" {USER}\r\n", f"<{USER}>", USER.upper() + "."])
def test_the_login_is_kept_as_the_store_reads_it(
    server: HatoProcess, smtp_connect: Callable[[int], SmtpLineClient], login: str
) -> None:
    # The password check forgives spaces, brackets and a final dot; replies and logs get
    # the address without them (a CR LF in a reply was an internal error).
    client = connect(server, smtp_connect)
    assert client.reply("EHLO client.example") == "250 HELP"
    credentials = base64.b64encode(f"\0{login}\0{PASSWORD}".encode()).decode()
    assert client.reply(f"AUTH PLAIN {credentials}") == "235 2.7.0 Authentication successful"
    shown = login.strip().strip("<>").removesuffix(".").replace("LOCALHOST", "localhost")
    assert client.reply("MAIL FROM:<bob@localhost>") == (
        f"553 5.7.1 <bob@localhost>: Sender address rejected: not owned by user {shown}"
    )
    assert client.reply(f"MAIL FROM:<{USER}>") == "250 2.1.0 Ok"


# -- any command line --------------------------------------------------------------------

VERBS = [
    "EHLO", "HELO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "VRFY", "EXPN",
    "HELP", "AUTH", "AUTH PLAIN", "AUTH LOGIN", "QUIT", "STARTTLS", "FOO", "",
]  # fmt: skip
# The bytes that mean something to the engine or to a reply: line ends, telnet editing
# (NUL, backspace, DEL, IAC), quoting, brackets, separators, escapes and UTF-8 (a lone
# lead byte, and U+2028, a line separator to some).
SPECIAL = st.sampled_from(
    [b"\r", b"\x00", b"\x08", b"\x7f", b"\xff", b"\x1b", b"\t", b" ", b"<", b">", b"@",
     b'"', b"\\", b".", b":", b"=", b"[", b"]", b"xn--", "ü".encode(), b"\xc3", b"\xe2\x80\xa8"]
)  # fmt: skip
ARGUMENT = st.lists(
    st.one_of(SPECIAL, st.binary(max_size=8), st.text("az09-.", max_size=12).map(str.encode)),
    max_size=8,
).map(b"".join)
DOMAIN = st.one_of(
    st.from_regex(r"[a-z0-9.-]{1,24}", fullmatch=True),
    st.sampled_from([*BAD_DOMAINS, "[127.0.0.1]", "[IPv6:::1]", "localhost", "exämple.org"]),
)
LOCAL = st.sampled_from(["u", "postmaster", "a.b", '"q q"', "jörg"])
ADDRESS = st.builds(lambda local, domain: f"<{local}@{domain}>".encode(), LOCAL, DOMAIN)
PATH_VERB = st.sampled_from([b"MAIL FROM:", b"RCPT TO:"])


def _may_be_bdat(line: bytes) -> bool:
    # BDAT takes the octets after it as data: such lines come from CHUNK, with their octets.
    # (Letters only, since telnet editing may join "BD\x08XAT" into a verb.)
    letters = re.sub(rb"[^a-z]", b"", line.lower()[:40])
    return all(letter in letters for letter in b"bdat")


LINE = (
    st.one_of(
        st.builds(lambda verb, arg: verb.encode() + b" " + arg, st.sampled_from(VERBS), ARGUMENT),
        st.builds(lambda verb, path, arg: verb + path + arg, PATH_VERB, ADDRESS, ARGUMENT),
        st.binary(max_size=40),
    )
    .map(lambda line: line.replace(b"\n", b""))
    .filter(lambda line: not _may_be_bdat(line))
)
CHUNK = st.builds(
    lambda data, last: (f"BDAT {len(data)}{' LAST' if last else ''}".encode(), data),
    st.binary(max_size=40),
    st.booleans(),
)
STEP = st.one_of(LINE.map(lambda line: (line, None)), CHUNK)
PROLOGUE = [b"EHLO client.example", b"MAIL FROM:<sender@example.org>", b"RCPT TO:<u@localhost>"]


def _code(answer: list[str]) -> int:
    return int(answer[-1][:3]) if re.match(r"[2-5]\d\d", answer[-1]) else 0


def _exchange(client: SmtpLineClient, line: bytes, data: bytes) -> int | None:
    """Send one line (and a chunk's octets); the reply code, or None once the session ends."""
    client.send(line + b"\r\n" + data)
    answer = client.read_reply()
    assert not answer[-1].startswith(INTERNAL_ERROR), (line, answer)
    if _code(answer) == 354:  # DATA went through: end the (empty) message
        client.send(b".\r\n")
        answer = client.read_reply()
        assert not answer[-1].startswith(INTERNAL_ERROR), (line, answer)
    code = _code(answer)
    # 220 to STARTTLS (TLS would start now), 221 to QUIT or a web verb, 421 closing (never
    # 4.3.0, see above; a limit, for instance): this session is over.
    return None if code in (220, 221, 421) else code


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(prologue=st.integers(0, len(PROLOGUE)), steps=st.lists(STEP, min_size=1, max_size=6))
def test_no_command_line_ends_in_an_internal_error(
    server: HatoProcess,
    smtp_connect: Callable[[int], SmtpLineClient],
    prologue: int,
    steps: list[tuple[bytes, bytes | None]],
) -> None:
    client = connect(server, smtp_connect)
    try:
        code: int | None = 0
        for line, data in [(line, None) for line in PROLOGUE[:prologue]] + steps:
            # Inside an AUTH exchange (334) a BDAT line is a SASL answer: no octets follow.
            code = _exchange(client, line, b"" if data is None or code == 334 else data)
            if code is None:
                return
            if code >= 500:
                # A refusal ends that command only: the session goes on.
                assert client.reply("NOOP") == "250 2.0.0 Ok", (line, code)
    finally:
        client.close()
