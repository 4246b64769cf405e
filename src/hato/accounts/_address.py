"""Normalization of domains and addresses, in one place for the store and the router.

Domains are compared as lowercase A-labels without a final dot (IDNA's nameprep already
maps every Unicode form of a name to one A-label); local parts are kept as written, in
Unicode NFC, for display and compared through a key: the local part with its quoting
removed (RFC 5321 4.1.2: ``"abc"@d`` and ``abc@d`` are one mailbox), casefolded unless
local parts are case-sensitive. NFC (RFC 6530 section 10.1, RFC 8264's "canonical
equivalence") makes a decomposed "u" + U+0308 and the precomposed "ü" one local part:
they look identical, so they must never be two mailboxes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from hato.accounts._errors import InvalidInput
from hato.smtp import AddressError, domain_a_label, parse_path

__all__ = [
    "POSTMASTER",
    "Address",
    "display_domain",
    "fold_local",
    "nfc",
    "normalize_domain",
    "parse_address",
    "parse_alias_source",
]

# RFC 5321 4.5.1: the local part every domain must accept, compared case-insensitively.
POSTMASTER = "postmaster"

# Lowercase LDH labels (RFC 1035 2.3.1; RFC 1123 2.1 lets a label start with a digit).
# RFC 6531 dot-string (atext plus UTF-8): a local part that needs no quotes.
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_QUOTED_PAIR = re.compile(r"\\(.)")


def nfc(text: str) -> str:
    """``text`` in Unicode NFC (plain ASCII, the common case, is returned as it is)."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def fold_local(content: str) -> str:
    """The caseless key of an unquoted local part: canonical caseless matching (Unicode
    3.13, D145), kept in NFC, since casefold() alone may leave a string unnormalized."""
    if content.isascii():
        return content.casefold()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", content).casefold())


def normalize_domain(text: str) -> str:
    """``text`` as the store compares it: lowercase A-label, no final dot.

    Raises InvalidInput for anything that is not a domain name, address literals included:
    an ``[IP]`` literal names a host, never a domain mail can be kept for.
    """
    name = text.strip().removesuffix(".")
    if not name:
        raise InvalidInput("a domain name cannot be empty")
    if name.startswith("["):
        raise InvalidInput(f"{text}: an address literal is not a domain name")
    try:
        return domain_a_label(name)
    except AddressError as error:
        raise InvalidInput(str(error).replace(name, text, 1)) from None


def display_domain(domain: str) -> str:
    """The Unicode form of a normalized domain, for people; the domain itself if plain ASCII."""
    try:
        return domain.encode("ascii").decode("idna")
    except UnicodeError:
        return domain


@dataclass(frozen=True, slots=True)
class Address:
    """A normalized address: ``local_part`` as written, ``domain`` as a lowercase A-label.

    A catch-all alias source has the empty local part and reads ``@domain``. An address
    parsed with ``allow_literal`` may have an ``[IP]`` literal as its domain, kept as written.
    The local part is always in NFC, however the Address was made.
    """

    local_part: str
    domain: str

    def __post_init__(self) -> None:
        if not self.local_part.isascii():
            object.__setattr__(self, "local_part", nfc(self.local_part))

    @property
    def text(self) -> str:
        return f"{self.local_part}@{self.domain}"

    @property
    def is_catch_all(self) -> bool:
        return self.local_part == ""

    @property
    def content(self) -> str:
        """The local part without its quoting: what it means rather than how it was written."""
        if len(self.local_part) >= 2 and self.local_part.startswith('"'):
            return _QUOTED_PAIR.sub(r"\1", self.local_part[1:-1])
        return self.local_part

    @property
    def is_postmaster(self) -> bool:
        return self.content.casefold() == POSTMASTER

    def key(self, case_sensitive: bool) -> str:
        """What two local parts must share to name one mailbox.

        "postmaster" is compared case-insensitively even when other local parts are not
        (RFC 5321 4.5.1 and 2.4).
        """
        if case_sensitive and not self.is_postmaster:
            return self.content
        return fold_local(self.content)

    def with_content(self, content: str) -> Address:
        """The address with another (unquoted) local part, quoted again if it needs it."""
        if _DOT_STRING.fullmatch(content):
            return Address(content, self.domain)
        escaped = content.replace("\\", "\\\\").replace('"', '\\"')
        return Address(f'"{escaped}"', self.domain)


def parse_address(text: str, *, allow_literal: bool = False) -> Address:
    """Parse ``local@domain`` (angle brackets and a final dot allowed) into an Address.

    The grammar is RFC 5321's with RFC 6531's UTF-8. Raises InvalidInput saying what is
    wrong. ``allow_literal`` lets ``user@[192.0.2.1]`` through, with its literal as written.
    """
    raw = text.strip()
    if raw.startswith("<") and raw.endswith(">"):
        raw = raw[1:-1]
    raw = raw.removesuffix(".")
    if raw.startswith("@"):
        # parse_path would take "@a:b@c" as a source route; nobody means that here.
        raise InvalidInput(f"{text}: an address needs a local part before the @")
    try:
        path = parse_path(raw, utf8=True, allow_null=False)
    except AddressError as exc:
        raise InvalidInput(f"{text} is not a valid address: {exc}") from None
    if path.domain.startswith("["):
        if not allow_literal:
            raise InvalidInput(f"{text}: use a domain name, not an address literal")
        return Address(path.local_part, path.domain)
    return Address(path.local_part, normalize_domain(path.domain))


def parse_alias_source(text: str) -> Address:
    """An alias source: ``local@domain``, or ``@domain`` for the domain's catch-all."""
    raw = text.strip()
    if raw.startswith("@") and "@" not in raw[1:] and ":" not in raw:
        return Address("", normalize_domain(raw[1:]))
    return parse_address(raw)
