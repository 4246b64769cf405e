"""What changed between two settings, by dotted key: what SIGHUP applies or reports."""

from __future__ import annotations

import dataclasses

from ._settings import Settings

__all__ = ["changed_keys", "with_keys"]


def changed_keys(old: Settings, new: Settings) -> tuple[str, ...]:
    """Every ``section.key`` whose value differs, in the file's order."""
    changed: list[str] = []
    for section in dataclasses.fields(old):
        before, after = getattr(old, section.name), getattr(new, section.name)
        if before == after:
            continue
        for key in dataclasses.fields(before):
            if getattr(before, key.name) != getattr(after, key.name):
                changed.append(f"{section.name}.{key.name}")
    return tuple(changed)


def with_keys(old: Settings, new: Settings, keys: tuple[str, ...]) -> Settings:
    """``old`` with the values of ``keys`` (``section.key``) taken from ``new``."""
    sections: dict[str, dict[str, object]] = {}
    for key in keys:
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = getattr(getattr(new, section), name)
    return dataclasses.replace(
        old,
        **{
            section: dataclasses.replace(getattr(old, section), **values)
            for section, values in sections.items()
        },
    )
