"""ESMTP parameters of MAIL and RCPT (RFC 1870, 6152, 3030, 6531, 3461, 4954).

Parsed once, validated where they are read, and kept in the envelope: the delivery
reports of a later stage depend on NOTIFY, ORCPT, RET and ENVID exactly as given.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._address import AddressError, xtext_decode
from ._reply import R_SIZE_OVER_LIMIT, Reply, bad_parameter

__all__ = ["MailParams", "ParamError", "RcptParams", "parse_mail_params", "parse_rcpt_params"]

BODY_TYPES = frozenset({"7BIT", "8BITMIME", "BINARYMIME"})
RET_TYPES = frozenset({"FULL", "HDRS"})
NOTIFY_TYPES = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# RFC 3461 4.4: ENVID is at most 100 characters.
MAX_ENVID = 100
# RFC 3461 4.2: ORCPT is at most 500 characters.
MAX_ORCPT = 500


class ParamError(Exception):
    """A parameter the client got wrong; carries the reply to send."""

    def __init__(self, answer: Reply) -> None:
        super().__init__(str(answer))
        self.reply = answer


@dataclass(frozen=True, slots=True, kw_only=True)
class MailParams:
    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    auth: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptParams:
    notify: tuple[str, ...] = ()
    orcpt: str | None = None


def _bad(detail: str) -> ParamError:
    return ParamError(bad_parameter(detail))


def _split(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split():
        keyword, eq, value = item.partition("=")
        key = keyword.upper()
        if not key or (eq and not value):
            raise _bad(f"Malformed parameter: {item[:40]}")
        if key in params:
            raise _bad(f"Duplicate parameter: {key}")
        params[key] = value if eq else None
    return params


def parse_mail_params(text: str, *, max_size: int) -> MailParams:
    fields: dict[str, object] = {}
    for key, value in _split(text).items():
        if key == "SMTPUTF8":
            if value is not None:
                raise _bad("SMTPUTF8 takes no value")
            fields["smtputf8"] = True
        elif value is None:
            raise _bad(f"Unsupported option: {key}" if key not in _MAIL else f"{key} needs a value")
        elif key in _MAIL:
            name, parsed = _MAIL[key](value, max_size)
            fields[name] = parsed
        else:
            raise _bad(f"Unsupported option: {key}")
    return MailParams(**fields)  # type: ignore[arg-type]


def _size(value: str, max_size: int) -> tuple[str, object]:
    # isdigit() alone also takes digits int() cannot read, such as "²".
    if not (value.isascii() and value.isdigit()) or len(value) > 20:
        raise _bad("Bad SIZE syntax: SIZE=<octets>")
    size = int(value)
    if size > max_size:
        raise ParamError(R_SIZE_OVER_LIMIT)
    return "size", size


def _body(value: str, _max: int) -> tuple[str, object]:
    body = value.upper()
    if body not in BODY_TYPES:
        raise _bad("Bad BODY syntax: BODY=7BIT|8BITMIME|BINARYMIME")
    return "body", body


def _ret(value: str, _max: int) -> tuple[str, object]:
    ret = value.upper()
    if ret not in RET_TYPES:
        raise _bad("Bad RET syntax: RET=FULL|HDRS")
    return "ret", ret


def _envid(value: str, _max: int) -> tuple[str, object]:
    try:
        envid = xtext_decode(value)
    except AddressError:
        raise _bad("Bad ENVID syntax: ENVID must be xtext") from None
    if len(value) > MAX_ENVID:
        raise _bad(f"ENVID longer than {MAX_ENVID} characters")
    return "envid", envid


def _auth(value: str, _max: int) -> tuple[str, object]:
    if value == "<>":
        return "auth", "<>"
    try:
        return "auth", xtext_decode(value)
    except AddressError:
        raise _bad("Bad AUTH= syntax: AUTH=<mailbox> in xtext") from None


_MAIL = {"SIZE": _size, "BODY": _body, "RET": _ret, "ENVID": _envid, "AUTH": _auth}


def parse_rcpt_params(text: str) -> RcptParams:
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    for key, value in _split(text).items():
        if key == "NOTIFY" and value is not None:
            notify = _notify(value)
        elif key == "ORCPT" and value is not None:
            orcpt = _orcpt(value)
        else:
            raise _bad(f"Unsupported option: {key}")
    return RcptParams(notify=notify, orcpt=orcpt)


def _notify(value: str) -> tuple[str, ...]:
    items = value.upper().split(",")
    # RFC 3461 4.1: NEVER, or one or more of SUCCESS, FAILURE, DELAY.
    if items == ["NEVER"]:
        return ("NEVER",)
    if len(set(items)) != len(items) or not set(items) <= NOTIFY_TYPES:
        raise _bad("Bad NOTIFY syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY")
    return tuple(items)


def _orcpt(value: str) -> str:
    addr_type, semicolon, address = value.partition(";")
    if not semicolon or not addr_type or not address or len(value) > MAX_ORCPT:
        raise _bad("Bad ORCPT syntax: ORCPT=rfc822;address")
    if addr_type.lower() == "utf-8":
        # RFC 6533 utf-8-addr-xtext is kept as given; its \x{..} escapes stay escaped.
        return f"utf-8;{address}"
    try:
        return f"{addr_type.lower()};{xtext_decode(address)}"
    except AddressError:
        raise _bad("Bad ORCPT syntax: the address must be xtext") from None
