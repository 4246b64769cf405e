"""ESMTP parameters on MAIL and RCPT: parsed values reach the caller and the envelope;
wrong ones get 555 5.5.4 (or 552 for a declared size over the limit)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from smtp_harness import AcceptAll

from hato.smtp import (
    Limits,
    MailFrom,
    MailParams,
    ParamError,
    RcptParams,
    RcptTo,
    parse_mail_params,
    parse_rcpt_params,
)

Session = Callable[..., AcceptAll]

GREETED = b"EHLO client.example\r\n"


@pytest.mark.parametrize(
    ("params", "parsed"),
    [
        (b"", MailParams()),
        (b" SIZE=1000", MailParams(size=1000)),
        (b" SIZE=0", MailParams(size=0)),
        (b" size=2048", MailParams(size=2048)),
        (b" BODY=7BIT", MailParams(body="7BIT")),
        (b" BODY=8bitmime", MailParams(body="8BITMIME")),
        (b" BODY=BINARYMIME", MailParams(body="BINARYMIME")),
        (b" SMTPUTF8", MailParams(smtputf8=True)),
        (b" RET=FULL", MailParams(ret="FULL")),
        (b" ret=hdrs", MailParams(ret="HDRS")),
        (b" ENVID=abc+2Bdef", MailParams(envid="abc+def")),
        (b" ENVID=QQ+3D1", MailParams(envid="QQ=1")),
        (b" AUTH=<>", MailParams(auth="<>")),
        (b" AUTH=alice+40example.org", MailParams(auth="alice@example.org")),
        (
            b" SIZE=500 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1",
            MailParams(size=500, body="8BITMIME", smtputf8=True, ret="HDRS", envid="id+1"),
        ),
    ],
)
def test_mail_parameters_reach_the_envelope(
    session: Session, params: bytes, parsed: MailParams
) -> None:
    smtp = session(Limits(max_message_size=100_000))
    smtp.feed(GREETED)
    assert smtp.feed(b"MAIL FROM:<alice@example.org>" + params + b"\r\n") == ["250 2.1.0 Ok"]
    assert smtp.of_type(MailFrom) == [MailFrom(reverse_path="alice@example.org", params=parsed)]
    assert smtp.conn.transaction is not None
    assert smtp.conn.transaction.params == parsed


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (b"SIZE=100001", "552 5.3.4 Message size exceeds fixed limit"),
        (b"SIZE=99999999999999999999", "552 5.3.4 Message size exceeds fixed limit"),
        (b"SIZE=123456789012345678901", "555 5.5.4 Bad SIZE syntax: SIZE=<octets>"),
        (b"SIZE=ten", "555 5.5.4 Bad SIZE syntax: SIZE=<octets>"),
        (b"SIZE=-1", "555 5.5.4 Bad SIZE syntax: SIZE=<octets>"),
        ("SIZE=²".encode(), "555 5.5.4 Bad SIZE syntax: SIZE=<octets>"),
        ("SIZE=٣".encode(), "555 5.5.4 Bad SIZE syntax: SIZE=<octets>"),
        (b"SIZE", "555 5.5.4 SIZE needs a value"),
        (b"SIZE=", "555 5.5.4 Malformed parameter: SIZE="),
        (b"=5", "555 5.5.4 Malformed parameter: =5"),
        (b"BODY=9BIT", "555 5.5.4 Bad BODY syntax: BODY=7BIT|8BITMIME|BINARYMIME"),
        (b"SMTPUTF8=yes", "555 5.5.4 SMTPUTF8 takes no value"),
        (b"RET=SOME", "555 5.5.4 Bad RET syntax: RET=FULL|HDRS"),
        (b"ENVID=a+2b", "555 5.5.4 Bad ENVID syntax: ENVID must be xtext"),
        (b"ENVID=a+", "555 5.5.4 Bad ENVID syntax: ENVID must be xtext"),
        (b"ENVID=" + b"x" * 101, "555 5.5.4 ENVID longer than 100 characters"),
        (b"AUTH=a+zz", "555 5.5.4 Bad AUTH= syntax: AUTH=<mailbox> in xtext"),
        (b"FROBNICATE=1", "555 5.5.4 Unsupported option: FROBNICATE"),
        (b"XFLAG", "555 5.5.4 Unsupported option: XFLAG"),
        (b"NOTIFY=NEVER", "555 5.5.4 Unsupported option: NOTIFY"),
        (b"SIZE=1 SIZE=1", "555 5.5.4 Duplicate parameter: SIZE"),
        (b"BODY=7BIT body=8BITMIME", "555 5.5.4 Duplicate parameter: BODY"),
    ],
)
def test_bad_mail_parameters(session: Session, params: bytes, expected: str) -> None:
    smtp = session(Limits(max_message_size=100_000))
    smtp.feed(GREETED)
    assert smtp.feed(b"MAIL FROM:<alice@example.org> " + params + b"\r\n") == [expected]
    assert smtp.of_type(MailFrom) == []
    assert smtp.conn.transaction is None


@pytest.mark.parametrize(
    ("params", "parsed"),
    [
        (b"", RcptParams()),
        (b" NOTIFY=NEVER", RcptParams(notify=("NEVER",))),
        (b" notify=never", RcptParams(notify=("NEVER",))),
        (b" NOTIFY=SUCCESS", RcptParams(notify=("SUCCESS",))),
        (b" NOTIFY=FAILURE,DELAY", RcptParams(notify=("FAILURE", "DELAY"))),
        (b" NOTIFY=success,failure,delay", RcptParams(notify=("SUCCESS", "FAILURE", "DELAY"))),
        (b" ORCPT=rfc822;bob+40example.com", RcptParams(orcpt="rfc822;bob@example.com")),
        (b" ORCPT=RFC822;b+2Bx@example.com", RcptParams(orcpt="rfc822;b+x@example.com")),
        (b" ORCPT=utf-8;b\\x{00E9}@example.com", RcptParams(orcpt="utf-8;b\\x{00E9}@example.com")),
        (
            b" NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com",
            RcptParams(notify=("SUCCESS", "FAILURE"), orcpt="rfc822;bob@example.com"),
        ),
    ],
)
def test_rcpt_parameters_reach_the_envelope(
    session: Session, params: bytes, parsed: RcptParams
) -> None:
    smtp = session()
    smtp.feed(GREETED + b"MAIL FROM:<alice@example.org>\r\n")
    assert smtp.feed(b"RCPT TO:<bob@example.com>" + params + b"\r\n") == ["250 2.1.5 Ok"]
    assert smtp.of_type(RcptTo) == [RcptTo(forward_path="bob@example.com", params=parsed)]
    assert smtp.conn.transaction is not None
    assert smtp.conn.transaction.recipients == [("bob@example.com", parsed)]


NOTIFY_SYNTAX = "555 5.5.4 Bad NOTIFY syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY"
ORCPT_SYNTAX = "555 5.5.4 Bad ORCPT syntax: ORCPT=rfc822;address"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (b"NOTIFY=NEVER,SUCCESS", NOTIFY_SYNTAX),
        (b"NOTIFY=SUCCESS,NEVER", NOTIFY_SYNTAX),
        (b"NOTIFY=SUCCESS,SUCCESS", NOTIFY_SYNTAX),
        (b"NOTIFY=ALWAYS", NOTIFY_SYNTAX),
        (b"NOTIFY=SUCCESS,", NOTIFY_SYNTAX),
        (b"ORCPT=bob@example.com", ORCPT_SYNTAX),
        (b"ORCPT=rfc822;", ORCPT_SYNTAX),
        (b"ORCPT=;bob@example.com", ORCPT_SYNTAX),
        (b"ORCPT=rfc822;bob+4", "555 5.5.4 Bad ORCPT syntax: the address must be xtext"),
        (b"NOTIFY", "555 5.5.4 Unsupported option: NOTIFY"),
        (b"SIZE=10", "555 5.5.4 Unsupported option: SIZE"),
        (b"NOTIFY=NEVER NOTIFY=NEVER", "555 5.5.4 Duplicate parameter: NOTIFY"),
    ],
)
def test_bad_rcpt_parameters(session: Session, params: bytes, expected: str) -> None:
    smtp = session()
    smtp.feed(GREETED + b"MAIL FROM:<alice@example.org>\r\n")
    assert smtp.feed(b"RCPT TO:<bob@example.com> " + params + b"\r\n") == [expected]
    assert smtp.of_type(RcptTo) == []
    assert smtp.conn.transaction is not None
    assert smtp.conn.transaction.recipients == []


def test_declared_size_at_the_limit_is_accepted() -> None:
    assert parse_mail_params("SIZE=100", max_size=100).size == 100
    with pytest.raises(ParamError) as caught:
        parse_mail_params("SIZE=101", max_size=100)
    assert (caught.value.reply.code, caught.value.reply.enhanced) == (552, "5.3.4")


def test_parameter_errors_carry_their_reply() -> None:
    with pytest.raises(ParamError) as caught:
        parse_rcpt_params("NOTIFY=NEVER,DELAY")
    assert caught.value.reply.code == 555
    assert str(caught.value).startswith("555 5.5.4 Bad NOTIFY syntax")


def test_orcpt_longer_than_500_characters() -> None:
    # Too long for a 512-octet command line, so checked on the parser itself.
    value = "rfc822;" + "b" * 493
    assert parse_rcpt_params(f"ORCPT={value}").orcpt == value
    with pytest.raises(ParamError, match="Bad ORCPT syntax"):
        parse_rcpt_params(f"ORCPT={value}b")
