"""The layer map of docs/architecture.md, enforced: no module imports from a higher layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "hato"
DOC = ROOT / "docs" / "architecture.md"


def layer_map() -> dict[str, int]:
    """Read the table rows "| `name` | N | ..." from docs/architecture.md."""
    layers = {}
    for match in re.finditer(r"^\| `([a-z_]+)(?:/|\.py)?` \| (\d) \|", DOC.read_text(), re.M):
        layers[match.group(1)] = int(match.group(2))
    return layers


def top_module(path: Path, package: Path = PACKAGE) -> str:
    relative = path.relative_to(package)
    return relative.parts[0].removesuffix(".py")


def imported_modules(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, top-level hato module) for every import of a hato module in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = path.relative_to(package.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                full = [*base, *(node.module.split(".") if node.module else [])]
            else:
                full = (node.module or "").split(".")
            names = [full] if len(full) > 1 else [[*full, a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        else:
            continue
        for parts in names:
            if parts[0] == "hato" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_every_module_is_on_the_map() -> None:
    layers = layer_map()
    modules = {top_module(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert modules, "no modules found"
    missing = sorted(modules - layers.keys())
    assert not missing, f"modules missing from docs/architecture.md: {missing}"


def violations(path: Path, package: Path = PACKAGE) -> list[str]:
    layers = layer_map()
    own = top_module(path, package)
    if own in ("__init__", "__main__"):
        return []
    found = []
    for line, target in imported_modules(path, package):
        if target in (own, "__version__"):
            continue
        if target not in layers:
            found.append(f"{path.name}:{line} imports unknown hato.{target}")
        elif layers[target] >= layers[own]:
            found.append(
                f"{path.relative_to(package)}:{line}: layer {layers[own]} module '{own}' "
                f"imports '{target}' of layer {layers[target]}"
            )
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_imports_only_from_lower_layers(path: Path) -> None:
    assert violations(path) == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rule above is only worth something if it can fail: feed it bad imports."""
    package = tmp_path / "hato"
    (package / "smtp").mkdir(parents=True)
    relative = package / "smtp" / "_probe.py"
    relative.write_text("from ..server import Session\n")
    absolute = package / "spool.py"
    absolute.write_text("import hato.server\nfrom hato import smtp\n")
    assert violations(relative, package) == [
        "smtp/_probe.py:1: layer 0 module 'smtp' imports 'server' of layer 4"
    ]
    assert violations(absolute, package) == [
        "spool.py:1: layer 2 module 'spool' imports 'server' of layer 4"
    ]
