"""What TARGET names: an address, a domain, a host, or host:port (and ``--server``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..routing import SMTP_PORT
from ..smtp import AddressError, domain_a_label, is_ip_address, parse_path

__all__ = ["Target", "TargetError", "parse_server", "parse_target"]


class TargetError(ValueError):
    """A TARGET or --server that names nothing reachable; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Target:
    """``kind`` address or domain: MX lookup for ``domain``; host: connect to ``host:port``."""

    text: str  # as given
    kind: Literal["address", "domain", "host"]
    address: str | None = None  # for an address target
    domain: str | None = None  # the mail domain (address and domain targets)
    host: str | None = None  # a host name or IP address (host targets)
    port: int = SMTP_PORT


def parse_target(text: str) -> Target:
    """``user@example.com``, ``example.com``, ``192.0.2.1``, ``[2001:db8::1]``,
    ``mx.example.com:2525``. A bare name is a domain: when it has no MX records, RFC 5321's
    implicit MX makes it its own mail host, so a host name works too."""
    text = text.strip()
    if not text:
        raise TargetError("TARGET is empty")
    if "@" in text:
        try:
            path = parse_path(text, utf8=True, allow_null=False)
        except AddressError as error:
            raise TargetError(f"{text!r} is not a valid address: {error}") from None
        if path.domain.startswith("["):
            host = path.domain[1:-1].removeprefix("IPv6:").removeprefix("ipv6:")
            _check_ip(host, text)
            return Target(text, "address", address=path.address, domain=path.domain, host=host)
        return Target(text, "address", address=path.address, domain=_domain(path.domain, text))
    host, port = _split_port(text)
    if port is not None or is_ip_address(host):
        return Target(text, "host", host=host, port=port or SMTP_PORT)
    return Target(text, "domain", domain=_domain(host, text))


def parse_server(text: str) -> tuple[str, int]:
    """``--server HOST[:PORT]`` into (host, port); port 25 when none is given."""
    host, port = _split_port(text.strip())
    if not host:
        raise TargetError(f"--server {text!r}: expected HOST or HOST:PORT")
    if not is_ip_address(host):
        host = _domain(host, text)
    return host, port or SMTP_PORT


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise TargetError(f"{text!r}: expected [ADDRESS] or [ADDRESS]:PORT")
        host = inner.removeprefix("IPv6:").removeprefix("ipv6:")
        _check_ip(host, text)
        return host, _port(rest[1:], text) if rest else None
    if text.count(":") > 1:
        _check_ip(text, text)  # a bare IPv6 address, no port
        return text, None
    host, colon, port = text.partition(":")
    return host, _port(port, text) if colon else None


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise TargetError(f"{whole!r}: the port must be a number from 1 to 65535")
    return int(text)


def _check_ip(text: str, whole: str) -> None:
    if not is_ip_address(text):
        raise TargetError(f"{whole!r}: {text!r} is not an IP address")


def _domain(name: str, whole: str) -> str:
    try:
        return domain_a_label(name.removesuffix("."))
    except AddressError as error:
        raise TargetError(f"{whole!r}: {error}") from None
