"""The ``Authentication-Results`` field (RFC 8601): what we found, and who claims to be us.

One field per message, written by :func:`authentication_results` with every method named
(a method with no result is ``none``), each result clause made by ``authres`` so its values
are quoted as RFC 8601 wants, and folded at 78 characters between clauses and properties.
:func:`claims_authserv_id` tells the pipeline which existing fields pretend to be ours
(RFC 8601 5: they must be removed before ours is added).
"""

from __future__ import annotations

import re

import authres
import authres.arc
import authres.dmarc

from ._types import AuthResults, DkimResult

__all__ = ["authentication_results", "claims_authserv_id"]

FIELD_NAME = "Authentication-Results"
# RFC 5322 2.1.1: lines SHOULD be no more than 78 characters, excluding the CRLF.
LINE_LIMIT = 78
# Leading characters of b= kept in header.b (RFC 6008 2: at least 8 to tell them apart).
HEADER_B_LENGTH = 8


def authentication_results(authserv_id: str, results: AuthResults) -> bytes:
    """The whole field, folded, CRLF-terminated: ``Authentication-Results: host; spf=...;
    dkim=...; dmarc=...; arc=...``."""
    clauses = [[f"{_clean_token(authserv_id)};"]]
    resinfos = [_spf(results), *_dkim(results.dkim), _dmarc(results), _arc(results)]
    for index, resinfo in enumerate(resinfos):
        words = _words(resinfo)
        if index < len(resinfos) - 1:
            words[-1] += ";"
        clauses.append(words)
    return _fold(clauses).encode("ascii", "replace")


def claims_authserv_id(field_body: bytes, authserv_id: str) -> bool:
    """Whether an ``Authentication-Results`` field body names ``authserv_id`` (compared
    without regard to case). A body authres cannot parse is judged by its first token."""
    text = field_body.decode("utf-8", "replace")
    unfolded = re.sub(r"\r?\n[ \t]", " ", text).strip()
    wanted = authserv_id.strip().rstrip(".").lower()
    try:
        parsed = authres.parse_value(unfolded)
        claimed = str(parsed.authserv_id or "")
    except Exception:  # authres raises its own errors and plain ones on odd text
        claimed = _first_token(unfolded)
    return claimed.rstrip(".").lower() == wanted


def _first_token(text: str) -> str:
    """The first word after any comments (RFC 5322 CFWS), up to space, ';' or '('."""
    rest, previous = text, None
    while rest != previous:  # innermost comments first, so nested ones go too
        previous, rest = rest, re.sub(r"\([^()]*\)", " ", rest)
    match = re.match(r"\s*([^\s;()]+)", rest)
    return match.group(1) if match else ""


def _spf(results: AuthResults) -> authres.AuthenticationResult:
    spf = results.spf
    if spf is None:
        return authres.AuthenticationResult("spf", result="none")
    properties = []
    if spf.identity == "helo":
        properties.append(authres.AuthenticationResultProperty("smtp", "helo", spf.domain))
    elif spf.sender or spf.domain:
        properties.append(
            authres.AuthenticationResultProperty("smtp", "mailfrom", spf.domain or spf.sender)
        )
    return authres.AuthenticationResult(
        "spf",
        result=spf.result,
        result_comment=_comment(spf.explanation) or None,
        properties=properties,
    )


def _dkim(signatures: tuple[DkimResult, ...]) -> list[authres.AuthenticationResult]:
    if not signatures:
        return [authres.AuthenticationResult("dkim", result="none")]
    clauses = []
    for signature in signatures:
        properties = [
            authres.AuthenticationResultProperty("header", name, value)
            for name, value in (
                ("d", signature.domain),
                ("s", signature.selector),
                ("b", signature.header_b[:HEADER_B_LENGTH]),
            )
            if value and _is_token(value)
        ]
        clauses.append(
            authres.AuthenticationResult(
                "dkim",
                result=signature.result,
                reason=_reason(signature.reason, signature.result),
                properties=properties,
            )
        )
    return clauses


def _dmarc(results: AuthResults) -> authres.AuthenticationResult:
    dmarc = results.dmarc
    if dmarc is None:
        return authres.AuthenticationResult("dmarc", result="none")
    properties = []
    if dmarc.from_domain and _is_token(dmarc.from_domain):
        properties.append(authres.AuthenticationResultProperty("header", "from", dmarc.from_domain))
    comment = f"p={dmarc.published} dis={dmarc.policy}" if dmarc.published else ""
    return authres.AuthenticationResult(
        "dmarc",
        result=dmarc.result,
        result_comment=comment or None,
        reason=_reason(dmarc.reason, dmarc.result),
        properties=properties,
    )


def _arc(results: AuthResults) -> authres.AuthenticationResult:
    arc = results.arc
    if arc is None:
        return authres.AuthenticationResult("arc", result="none")
    comment = f"i={arc.instance}" if arc.instance else ""
    return authres.AuthenticationResult(
        "arc",
        result=arc.result,
        result_comment=comment or None,
        reason=_reason(arc.reason, arc.result),
    )


def _reason(reason: str, result: str) -> str | None:
    """A reason only where it explains something other than a pass (RFC 8601 2.7)."""
    if result in ("pass", "none") or not reason:
        return None
    # _quoted quotes it; keep it to one printable line without quote or backslash trouble.
    return re.sub(r"[^\x20-\x7e]", "?", reason).replace("\\", "/").replace('"', "'")[:200]


def _comment(text: str) -> str:
    """Text safe inside an RFC 5322 comment: printable, no parentheses or backslashes."""
    cleaned = re.sub(r"[^\x20-\x7e]", "?", text)
    return re.sub(r"[()\\]", "", cleaned).strip()[:200]


def _quoted(value: str) -> str:
    """An RFC 8601 ``value``: a token as it is, anything else a quoted-string. (authres's
    ``quote_if_needed`` leaves any text with an ``@`` bare, taking it for an address, so
    "query ... @port answered SERVFAIL" would end the field's grammar at its first space.)"""
    if re.fullmatch(r"[!#$%&'*+.0-9A-Z^_`a-z{|}~-]+", value):  # RFC 2045 token
        return value
    return '"' + re.sub(r'(["\\])', r"\\\1", value) + '"'


def _is_token(value: str) -> bool:
    return bool(re.fullmatch(r"[\x21-\x7e]+", value)) and not re.search(r'[()"\\;]', value)


def _clean_token(value: str) -> str:
    return re.sub(r"[^\x21-\x7e]|[();\\\"]", "", value) or "localhost"


def _words(resinfo: authres.AuthenticationResult) -> list[str]:
    """A result clause as the pieces a line may break between: ``method=result
    (comment)``, ``reason="..."``, then each property."""
    head = f"{resinfo.method}={resinfo.result}"
    if resinfo.result_comment:
        head += f" ({resinfo.result_comment})"
    words = [head]
    if resinfo.reason:
        words.append(f"reason={_quoted(str(resinfo.reason))}")
    words.extend(str(prop) for prop in resinfo.properties)
    return words


def _fold(clauses: list[list[str]]) -> str:
    """Lines of at most LINE_LIMIT characters where the words allow, a clause kept whole
    on a line when it fits, every continuation line starting with a space."""
    lines = [f"{FIELD_NAME}:"]
    for clause in clauses:
        whole = " " + " ".join(clause)
        if len(lines[-1]) + len(whole) > LINE_LIMIT and len(lines[-1]) > len(FIELD_NAME) + 1:
            lines.append("")
        for word in clause:
            piece = " " + word
            if lines[-1] and len(lines[-1]) + len(piece) > LINE_LIMIT:
                lines.append("")
            lines[-1] += piece
    return "\r\n".join(lines) + "\r\n"
