"""Applying a verdict's changes: header edits and a new body to the message's bytes, a
new sender and added or deleted recipients to its envelope."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..spool import Envelope, Recipient
from ._filter import HeaderEdit, parse_header

__all__ = ["apply_edits", "readdress", "with_crlf"]


def with_crlf(data: bytes) -> bytes:
    """Every line end as CRLF (a milter may fold with LF alone): Hato stores CRLF only."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def apply_edits(message: bytes, edits: Sequence[HeaderEdit], body: bytes | None) -> bytes:
    """``message`` with ``edits`` applied in order to its header section, and its body
    (what follows the blank line) replaced by ``body`` when given."""
    if message.startswith(b"\r\n"):
        section, rest = b"", message
    else:
        end = message.find(b"\r\n\r\n")
        section, rest = (message[: end + 2], message[end + 2 :]) if end >= 0 else (message, b"")
    header = parse_header(section)
    # The section as blocks: each field's bytes (name known) and what lies between fields.
    blocks: list[tuple[str | None, bytes]] = []
    at = 0
    for (name, _), (start, stop) in zip(header.fields, header.spans, strict=True):
        if start > at:
            blocks.append((None, section[at:start]))
        blocks.append((name, section[start:stop]))
        at = stop
    if at < len(section):
        blocks.append((None, section[at:]))
    for edit in edits:
        _apply(blocks, edit)
    if body is not None:
        rest = b"\r\n" + with_crlf(body)
    return b"".join(raw for _, raw in blocks) + rest


def _apply(blocks: list[tuple[str | None, bytes]], edit: HeaderEdit) -> None:
    field = edit.name.encode("ascii") + b":" + with_crlf(edit.value).rstrip(b"\r\n") + b"\r\n"
    fields = [i for i, (name, _) in enumerate(blocks) if name is not None]
    if edit.action == "add":
        blocks.insert(fields[-1] + 1 if fields else len(blocks), (edit.name, field))
    elif edit.action == "insert":
        where = fields[edit.index] if edit.index < len(fields) else _after_last(blocks, fields)
        blocks.insert(where, (edit.name, field))
    else:
        wanted = edit.name.lower()
        named = [i for i in fields if (blocks[i][0] or "").lower() == wanted]
        if 1 <= edit.index <= len(named) or (edit.index == 0 and named):
            at = named[max(edit.index, 1) - 1]
            if edit.value.strip():
                blocks[at] = (edit.name, field)
            else:
                del blocks[at]
        elif edit.value.strip():
            blocks.insert(_after_last(blocks, fields), (edit.name, field))


def _after_last(blocks: list[tuple[str | None, bytes]], fields: list[int]) -> int:
    return fields[-1] + 1 if fields else len(blocks)


def readdress(
    envelope: Envelope,
    *,
    sender: str | None,
    add: Sequence[str],
    delete: Sequence[str],
) -> Envelope | None:
    """The envelope with a new sender and recipients added and deleted (addresses compared
    without case); None when no recipient is left."""
    gone = {address.lower() for address in delete}
    recipients = [r for r in envelope.recipients if r.address.lower() not in gone]
    known = {r.address.lower() for r in recipients}
    for address in add:
        if address.lower() not in known:
            recipients.append(Recipient(address=address))
            known.add(address.lower())
    if not recipients:
        return None
    return dataclasses.replace(
        envelope,
        reverse_path=envelope.reverse_path if sender is None else sender,
        recipients=tuple(recipients),
    )
