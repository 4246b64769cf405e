"""Envelope addresses: RFC 5321 section 4.1.2 paths, RFC 6531 UTF-8 addresses, RFC 3461 xtext.

Parsing never interprets an address beyond its grammar: what comes out is a plain
string that no later layer hands to a shell or a path without its own checks.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "AddressError",
    "Path",
    "domain_a_label",
    "is_ip_address",
    "parse_path",
    "split_path",
    "xtext_decode",
    "xtext_encode",
]

# RFC 5321 4.5.3.1: size limits of the parts of a path.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256

_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_UTF8 = r"\u0080-\U0010ffff"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT}{_UTF8}]+(?:\.[{_ATEXT}{_UTF8}]+)*\Z")
# qtextSMTP is %d32-33 / %d35-91 / %d93-126; quoted-pairSMTP is a backslash and %d32-126.
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"\Z')
_QUOTED_UTF8 = re.compile(rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8}]|\\[\x20-\x7e])*"\Z')
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_LABEL_UTF8 = re.compile(rf"[A-Za-z0-9{_UTF8}](?:[A-Za-z0-9{_UTF8}-]*[A-Za-z0-9{_UTF8}])?\Z")
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+\Z")
_XTEXT_CHAR = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")


class AddressError(ValueError):
    """An address that does not follow the grammar; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed reverse-path or forward-path.

    ``address`` is ``local@domain`` as the client wrote it ("" for the null path ``<>``),
    source routes (RFC 5321 4.1.1.3: accepted, ignored) already removed.
    """

    address: str
    local_part: str
    domain: str


def is_ip_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address as written (no brackets, no prefix)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def split_path(argument: str) -> tuple[str, str]:
    """Split ``<path> params`` (or a bare ``path params``) into the path text and the rest.

    Lenient where real clients are sloppy: ``FROM: <a@b>`` (leading space) and a path
    without angle brackets are both taken. The closing ``>`` is found outside quotes, so
    ``<"a>b"@c>`` stays one path.
    """
    text = argument.lstrip(" ")
    if not text.startswith("<"):
        path, _, rest = text.partition(" ")
        return path, rest
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return text[: index + 1], text[index + 1 :]
    raise AddressError("missing closing angle bracket")


def parse_path(text: str, *, utf8: bool, allow_null: bool, allow_postmaster: bool = False) -> Path:
    """Parse one path (with or without angle brackets) into a :class:`Path`."""
    inner = text[1:-1] if text.startswith("<") and text.endswith(">") else text
    if text.startswith("<") != text.endswith(">") or not text:
        raise AddressError("unbalanced angle brackets")
    if inner == "":
        if allow_null:
            return Path("", "", "")
        raise AddressError("the null path <> is not allowed here")
    if len(inner.encode("utf-8")) > MAX_PATH:
        raise AddressError(f"path longer than {MAX_PATH} octets")
    if inner.startswith("@"):
        route, colon, inner = inner.partition(":")
        if not colon or not all(
            part.startswith("@") and _is_domain(part[1:], utf8) for part in route.split(",")
        ):
            raise AddressError("malformed source route")
    if allow_postmaster and inner.lower() == "postmaster":
        # RFC 5321 4.5.1: <Postmaster> without a domain must be accepted as a recipient.
        return Path(inner, inner, "")
    local, domain = _split_mailbox(inner)
    _check_local_part(local, utf8)
    if not (_is_domain(domain, utf8) or _is_address_literal(domain)):
        raise AddressError(f"invalid domain {domain!r}")
    return Path(f"{local}@{domain}", local, domain)


def _split_mailbox(mailbox: str) -> tuple[str, str]:
    if mailbox.startswith('"'):
        # The domain starts after the closing quote, which may hide an "@" inside.
        match = re.match(r'"(?:[^"\\]|\\.)*"', mailbox)
        if match is None:
            raise AddressError("unterminated quoted local part")
        local, rest = match.group(0), mailbox[match.end() :]
        if not rest.startswith("@"):
            raise AddressError("missing @domain")
        return local, rest[1:]
    local, at, domain = mailbox.rpartition("@")
    if not at or not local:
        raise AddressError("missing @domain" if not at else "empty local part")
    return local, domain


def _check_local_part(local: str, utf8: bool) -> None:
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError(f"local part longer than {MAX_LOCAL_PART} octets")
    dot_string, quoted = (_DOT_STRING_UTF8, _QUOTED_UTF8) if utf8 else (_DOT_STRING, _QUOTED)
    if not (dot_string.match(local) or quoted.match(local)):
        raise AddressError(f"invalid local part {local!r}")


def _is_domain(domain: str, utf8: bool) -> bool:
    if not domain or len(domain.encode("utf-8")) > MAX_DOMAIN:
        return False
    label = _LABEL_UTF8 if utf8 else _LABEL
    return all(label.match(part) for part in domain.split("."))


def _is_address_literal(domain: str) -> bool:
    if not (domain.startswith("[") and domain.endswith("]")):
        return False
    body = domain[1:-1]
    try:
        if body[:5].upper() == "IPV6:":
            ipaddress.IPv6Address(body[5:])
            return True
        if re.fullmatch(r"[0-9.]+", body):
            ipaddress.IPv4Address(body)
            return True
    except ValueError:
        return False
    return _GENERAL_LITERAL.match(body) is not None


_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


def domain_a_label(name: str) -> str:
    """A domain name in its lowercase A-label form (IDN via IDNA 2003 nameprep).

    Raises AddressError saying what is wrong: not a valid name, a bad label, longer than
    253 characters, or an all-numeric last label (an IP address, not a domain). The one
    definition of "a domain" that configuration and the account store share.
    """
    try:
        # Nameprep lowercases non-ASCII labels; ASCII labels keep their case, hence lower().
        ascii_form = name.encode("idna").decode("ascii").lower()
        # Decoding back checks that every xn-- label is real Punycode.
        ascii_form.encode("ascii").decode("idna")
    except UnicodeError:
        raise AddressError(f"{name} is not a valid domain name") from None
    labels = ascii_form.split(".")
    bad = [label for label in labels if not _DOMAIN_LABEL.match(label)]
    if bad:
        raise AddressError(
            f'{name} is not a valid domain name: label "{bad[0]}" may hold only letters,'
            " digits and inner hyphens, at most 63"
        )
    if len(ascii_form) > MAX_DOMAIN - 2:
        raise AddressError(f"{name} is longer than {MAX_DOMAIN - 2} characters")
    if labels[-1].isdigit():
        raise AddressError(f"{name} looks like an IP address, not a domain name")
    return ascii_form


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 section 4 xtext (``+2B`` for ``+``); raise AddressError if malformed."""
    if not _XTEXT_CHAR.match(text):
        raise AddressError("malformed xtext")
    return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), text)


def xtext_encode(text: str) -> str:
    """Encode text as xtext: ``+``, ``=`` and characters outside ``!``..``~`` become ``+HH``."""
    out = []
    for char in text:
        code = ord(char)
        if 33 <= code <= 126 and char not in "+=":
            out.append(char)
        else:
            out.extend(f"+{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)
