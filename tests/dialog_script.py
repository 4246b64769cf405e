"""The golden dialog files (``tests/dialogs/*.txt``): their format, parsed once for the
runners that play them (a real ``hato serve`` over a socket in
``integration/test_dialogs.py``, an in-process session in
``unit/server/test_session_dialogs.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DIALOGS = Path(__file__).resolve().parent / "dialogs"
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[rnt0\\])")
_SIMPLE_ESCAPES = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\0", b"\\": b"\\"}
QUEUED = re.compile(r"^250 .*queued as (\S+)$")


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the runner does: send bytes, expect a reply line, or expect the end."""

    kind: str  # "send", "expect", "eof" or "stored"
    data: bytes = b""
    pattern: str = ""
    lineno: int = 0


def unescape(text: str) -> bytes:
    """Decode the escapes of a ``C!`` line; any other backslash is an error in the file."""
    raw = text.encode("utf-8")

    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"x":
            return bytes((int(code[1:], 16),))
        return _SIMPLE_ESCAPES[code]

    decoded = _ESCAPE.sub(one, raw)
    if b"\\" in _ESCAPE.sub(b"", raw):
        raise ValueError(f"unknown escape in {text!r}")
    return decoded


def parse(path: Path) -> list[Step]:
    steps: list[Step] = []
    held = b""
    held_since = 0
    for lineno, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        prefix, _, text = line.partition(" ")
        where = f"{path.name}:{lineno}"
        if prefix in ("C:", "C+"):
            data = text.encode("utf-8") + b"\r\n"
        elif prefix in ("C!", "C+!"):
            data = unescape(text)
        elif prefix in ("S:", "EOF", "M:"):
            if held:
                raise ValueError(f"{where}: a C+ batch from line {held_since} is not closed")
            if prefix == "EOF":
                steps.append(Step("eof", lineno=lineno))
            elif prefix == "M:":
                steps.append(Step("stored", data=text.encode("utf-8") + b"\r\n", lineno=lineno))
            else:
                steps.append(Step("expect", pattern=text, lineno=lineno))
            continue
        else:
            raise ValueError(f"{where}: unknown prefix {prefix!r}")
        if prefix.startswith("C+"):
            held_since = held_since if held else lineno
            held += data
            continue
        steps.append(Step("send", data=held + data, lineno=lineno))
        held = b""
    if held:
        raise ValueError(f"{path.name}: the C+ batch from line {held_since} is never sent")
    return steps


def matches(pattern: str, line: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, line, re.DOTALL) is not None


def dialog_files() -> list[Path]:
    files = sorted(DIALOGS.glob("*.txt"))
    assert files, f"no dialogs in {DIALOGS}"
    return files
