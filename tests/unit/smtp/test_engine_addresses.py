"""Reverse-paths and forward-paths: what the engine takes, what it refuses, and what
reaches the caller (RFC 5321 4.1.2, RFC 6531)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from smtp_harness import AcceptAll

from hato.smtp import AddressError, MailFrom, Path, RcptTo, parse_path, split_path

Session = Callable[..., AcceptAll]

GREETED = b"EHLO client.example\r\n"


def in_mail(session: Session, mail: bytes = b"MAIL FROM:<alice@example.org>") -> AcceptAll:
    smtp = session()
    smtp.feed(GREETED)
    assert smtp.feed(mail + b"\r\n") == ["250 2.1.0 Ok"]
    return smtp


@pytest.mark.parametrize(
    ("argument", "reverse_path"),
    [
        (b"<alice@example.org>", "alice@example.org"),
        (b"<first.last+tag@sub.example.org>", "first.last+tag@sub.example.org"),
        (b"<!#$%&'*+-/=?^_`{|}~@example.org>", "!#$%&'*+-/=?^_`{|}~@example.org"),
        (b'<"john doe"@example.com>', '"john doe"@example.com'),
        (b'<"a>b"@x.y>', '"a>b"@x.y'),
        (b'<"q\\"uote"@x.y>', '"q\\"uote"@x.y'),
        (b"<user@[192.0.2.1]>", "user@[192.0.2.1]"),
        (b"<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"),
        (b"<user@[ipv6:::1]>", "user@[ipv6:::1]"),
        (b"<>", ""),
        (b"<@relay.example,@hop.example:alice@example.org>", "alice@example.org"),
        (b" <alice@example.org>", "alice@example.org"),
        (b"alice@example.org", "alice@example.org"),
        (b"<" + b"a" * 64 + b"@example.org>", "a" * 64 + "@example.org"),
    ],
)
def test_mail_from_accepted(session: Session, argument: bytes, reverse_path: str) -> None:
    smtp = session()
    smtp.feed(GREETED)
    assert smtp.feed(b"MAIL FROM:" + argument + b"\r\n") == ["250 2.1.0 Ok"]
    (event,) = smtp.of_type(MailFrom)
    assert event.reverse_path == reverse_path
    assert smtp.conn.transaction is not None
    assert smtp.conn.transaction.reverse_path == reverse_path


@pytest.mark.parametrize(
    ("argument", "reply"),
    [
        (b"<" + b"a" * 65 + b"@example.org>", "501 5.1.7 Bad sender address syntax (local part"),
        (b"<alice@-bad-.example>", "501 5.1.7 Bad sender address syntax (invalid domain"),
        (b"<alice@example..org>", "501 5.1.7 Bad sender address syntax (invalid domain"),
        (b"<alice@>", "501 5.1.7 Bad sender address syntax (invalid domain"),
        (b"<alice>", "501 5.1.7 Bad sender address syntax (missing @domain)"),
        (b"<@example.org>", "501 5.1.7 Bad sender address syntax (malformed source route)"),
        (b"<alice@example.org", "501 5.1.7 Bad sender address syntax (missing closing angle"),
        (b"alice@example.org>", "501 5.1.7 Bad sender address syntax (unbalanced"),
        (b"", "501 5.1.7 Bad sender address syntax (unbalanced"),
        (b"<a b@example.org>", "501 5.1.7 Bad sender address syntax (invalid local part"),
        (b"<.a@example.org>", "501 5.1.7 Bad sender address syntax (invalid local part"),
        (b'<"unterminated@example.org>', "501 5.1.7 Bad sender address syntax (missing closing"),
        (b"<user@[192.0.2.300]>", "501 5.1.7 Bad sender address syntax (invalid domain"),
        (b"<user@[IPv6:zz::1]>", "501 5.1.7 Bad sender address syntax (invalid domain"),
        (b"<" + b"a" * 60 + b"@" + b"b" * 200 + b".example>", "501 5.1.7 Bad sender address syn"),
        ("<jörg@example.org>".encode(), "553 5.6.7 Error: non-ASCII address requires SMTPUTF8"),
        ("<jorg@exämple.org>".encode(), "553 5.6.7 Error: non-ASCII address requires SMTPUTF8"),
    ],
)
def test_mail_from_refused(session: Session, argument: bytes, reply: str) -> None:
    smtp = session()
    smtp.feed(GREETED)
    (line,) = smtp.feed(b"MAIL FROM:" + argument + b"\r\n")
    assert line.startswith(reply)
    assert smtp.of_type(MailFrom) == []
    assert smtp.conn.transaction is None


def test_utf8_address_with_smtputf8(session: Session) -> None:
    smtp = in_mail(session, "MAIL FROM:<jörg@exämple.org> SMTPUTF8".encode())
    assert smtp.feed("RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\n".encode()) == ["250 2.1.5 Ok"]
    (mail,) = smtp.of_type(MailFrom)
    assert mail.reverse_path == "jörg@exämple.org"
    assert mail.params.smtputf8 is True
    (rcpt,) = smtp.of_type(RcptTo)
    assert rcpt.forward_path == "δοκιμή@παράδειγμα.δοκιμή"


def test_utf8_recipient_without_smtputf8(session: Session) -> None:
    smtp = in_mail(session)
    assert smtp.feed("RCPT TO:<δοκιμή@example.org>\r\n".encode()) == [
        "553 5.6.7 Error: non-ASCII address requires SMTPUTF8"
    ]


def test_malformed_utf8_address_with_smtputf8_is_a_syntax_error(session: Session) -> None:
    # SMTPUTF8 was given, so the refusal is about syntax, not about the missing extension.
    smtp = session()
    smtp.feed(GREETED)
    (line,) = smtp.feed("MAIL FROM:<jörg@-bad-> SMTPUTF8\r\n".encode())
    assert line.startswith("501 5.1.7 Bad sender address syntax (invalid domain")
    smtp.feed("MAIL FROM:<jörg@example.org> SMTPUTF8\r\n".encode())
    (line,) = smtp.feed("RCPT TO:<δ@-bad->\r\n".encode())
    assert line.startswith("501 5.1.3 Bad recipient address syntax (invalid domain")


@pytest.mark.parametrize(
    ("argument", "forward_path"),
    [
        (b"<bob@example.com>", "bob@example.com"),
        (b"<Postmaster>", "Postmaster"),
        (b"<postmaster>", "postmaster"),
        (b"<postmaster@example.com>", "postmaster@example.com"),
        (b'<"a>b"@x.y>', '"a>b"@x.y'),
        (b"<@hop.example:bob@example.com>", "bob@example.com"),
        (b"<bob@[IPv6:::1]>", "bob@[IPv6:::1]"),
        (b"bob@example.com", "bob@example.com"),
        (b"   <bob@example.com>", "bob@example.com"),
    ],
)
def test_rcpt_to_accepted(session: Session, argument: bytes, forward_path: str) -> None:
    smtp = in_mail(session)
    assert smtp.feed(b"RCPT TO:" + argument + b"\r\n") == ["250 2.1.5 Ok"]
    (event,) = smtp.of_type(RcptTo)
    assert event.forward_path == forward_path
    assert smtp.conn.transaction is not None
    assert [path for path, _ in smtp.conn.transaction.recipients] == [forward_path]


@pytest.mark.parametrize(
    ("argument", "reply"),
    [
        (b"<>", "501 5.1.3 Bad recipient address syntax (the null path <> is not allowed here)"),
        (b"<Postmaster@>", "501 5.1.3 Bad recipient address syntax (invalid domain"),
        (b"<bob@example.com", "501 5.1.3 Bad recipient address syntax (missing closing"),
        (b"<" + b"b" * 65 + b"@example.com>", "501 5.1.3 Bad recipient address syntax (local"),
        (b"<bob@exa_mple.com>", "501 5.1.3 Bad recipient address syntax (invalid domain"),
    ],
)
def test_rcpt_to_refused(session: Session, argument: bytes, reply: str) -> None:
    smtp = in_mail(session)
    (line,) = smtp.feed(b"RCPT TO:" + argument + b"\r\n")
    assert line.startswith(reply)
    assert smtp.of_type(RcptTo) == []
    assert smtp.conn.transaction is not None
    assert smtp.conn.transaction.recipients == []


# -- the parser on its own ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "path", "rest"),
    [
        ("<a@b> SIZE=10", "<a@b>", " SIZE=10"),
        ('<"a>b"@c> BODY=8BITMIME', '<"a>b"@c>', " BODY=8BITMIME"),
        ('<"a\\">b"@c>', '<"a\\">b"@c>', ""),
        ("  <a@b>", "<a@b>", ""),
        ("a@b SIZE=1", "a@b", "SIZE=1"),
    ],
)
def test_split_path(argument: str, path: str, rest: str) -> None:
    assert split_path(argument) == (path, rest)


def test_parse_path_parts() -> None:
    assert parse_path('<"john doe"@example.com>', utf8=False, allow_null=False) == Path(
        '"john doe"@example.com', '"john doe"', "example.com"
    )
    null = parse_path("<>", utf8=False, allow_null=True)
    assert null.is_null
    assert not parse_path("<a@b.c>", utf8=False, allow_null=True).is_null


def test_postmaster_only_where_allowed() -> None:
    with pytest.raises(AddressError, match="missing @domain"):
        parse_path("<Postmaster>", utf8=False, allow_null=False)
    assert parse_path("<POSTMASTER>", utf8=False, allow_null=False, allow_postmaster=True) == Path(
        "POSTMASTER", "POSTMASTER", ""
    )


def test_path_longer_than_256_octets() -> None:
    domain = ".".join(["b" * 63] * 3) + ".cc"  # 194 octets: within the domain limit
    fits = f"<{'a' * 60}@{domain}>"  # 255 octets inside the brackets
    assert parse_path(fits, utf8=False, allow_null=False).domain == domain
    with pytest.raises(AddressError, match="longer than 256"):
        parse_path(f"<{'a' * 62}@{domain}>", utf8=False, allow_null=False)


# -- octets that are no text: refused, never dropped or taken into an address -------------


@pytest.mark.parametrize("smtputf8", [b"", b" SMTPUTF8"])
@pytest.mark.parametrize(
    ("address", "what"),
    [
        (b"a\x00b@example.com", "a NUL character"),
        (b"j\xff\xfe\xc0rg@example.com", "octets that are not UTF-8"),  # IAC DONT 0xc0
        (b"j\xc3rg@example.com", "octets that are not UTF-8"),
        (b"j\xedrg@example.com", "octets that are not UTF-8"),
        (b"a@ex\xffample.com", "octets that are not UTF-8"),
    ],
)
def test_mail_from_with_octets_that_are_not_text(
    session: Session, address: bytes, what: str, smtputf8: bytes
) -> None:
    smtp = session()
    smtp.feed(GREETED)
    assert smtp.feed(b"MAIL FROM:<" + address + b">" + smtputf8 + b"\r\n") == [
        f"501 5.5.2 Error: MAIL line has {what}"
    ]
    assert smtp.of_type(MailFrom) == []
    assert smtp.conn.transaction is None


@pytest.mark.parametrize(
    ("address", "what"),
    [
        (b"b\x00ob@example.com", "a NUL character"),
        (b"bob@example.com\x00", "a NUL character"),
        (b"b\xff\xfb\x01ob@example.com", "octets that are not UTF-8"),
        (b"b\x80ob@example.com", "octets that are not UTF-8"),
    ],
)
def test_rcpt_to_with_octets_that_are_not_text(session: Session, address: bytes, what: str) -> None:
    smtp = in_mail(session, b"MAIL FROM:<alice@example.org> SMTPUTF8")
    assert smtp.feed(b"RCPT TO:<" + address + b">\r\n") == [
        f"501 5.5.2 Error: RCPT line has {what}"
    ]
    assert smtp.of_type(RcptTo) == []
    # The session goes on: the next recipient is taken as sent.
    assert smtp.feed(b"RCPT TO:<bob@example.com>\r\n") == ["250 2.1.5 Ok"]
    assert [r.forward_path for r in smtp.of_type(RcptTo)] == ["bob@example.com"]


@pytest.mark.parametrize(
    "line",
    [b"VRFY ro\x00ot", b"EXPN st\xffaff", b"HELO a\x00b", b"EHLO \xfe", b"HELP MA\x00IL"],
)
def test_other_commands_with_octets_that_are_not_text(session: Session, line: bytes) -> None:
    smtp = session()
    smtp.feed(GREETED)
    (answer,) = smtp.feed(line + b"\r\n")
    assert answer.startswith(f"501 5.5.2 Error: {line[:4].decode()} line has ")
    assert smtp.conn.helo == "client.example"


def test_nul_in_an_unknown_command_is_refused(session: Session) -> None:
    smtp = session()
    assert smtp.feed(b"NO\x00OP\r\n") == ["501 5.5.2 Error: command line has a NUL character"]
