"""The layering the design fixes: judges and strategies depend inward only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "judges": ("strategies", "consensus.coordinator", "consensus.runner", "consensus.cli",
               "consensus.scenario", "consensus.oracle"),
    "strategies": ("judges", "ray", "consensus.coordinator", "consensus.runner", "consensus.cli",
                   "structlog", "logging"),
}


IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\b|import\s+([\w.]+(?:\s*,\s*[\w.]+)*))",
                    re.MULTILINE)


def imports_of(path: Path) -> set[str]:
    """Modules a file imports, nested imports included (text scan: ``ast.parse`` of CPython
    3.11 failed here once with "AST constructor recursion depth mismatch" in a full run)."""
    out: set[str] = set()
    for m in IMPORT.finditer(path.read_text(encoding="utf-8")):
        if m.group(1):
            out.add(m.group(1))
        else:
            out.update(x.strip() for x in m.group(2).split(","))
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_inward(package):
    bad = {f"{f.relative_to(ROOT)}: {m}"
           for f in sorted((ROOT / package).glob("*.py")) for m in imports_of(f)
           if any(m == x or m.startswith(x + ".") for x in FORBIDDEN[package])}
    assert not bad, sorted(bad)
