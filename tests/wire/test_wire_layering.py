"""ARCHITECTURE.md section 1: ``multiraft.wire`` is the only package that imports cbor2."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports_cbor2(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(n.split(".")[0] == "cbor2" for n in names):
            lines.append(node.lineno)
    return lines


def test_only_the_wire_package_imports_cbor2() -> None:
    wire = REPO / "multiraft" / "wire"
    offenders = []
    for root in (REPO / "multiraft", REPO / "regions"):
        for path in sorted(root.rglob("*.py")):
            if wire in path.parents:
                continue
            offenders += [f"{path.relative_to(REPO)}:{n}" for n in _imports_cbor2(path)]
    assert not offenders, "cbor2 imported outside multiraft/wire: " + ", ".join(offenders)


def test_the_check_sees_wire_itself() -> None:
    assert _imports_cbor2(REPO / "multiraft" / "wire" / "_cbor.py")
