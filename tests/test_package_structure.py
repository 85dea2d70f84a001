"""The package's shape: no two subpackages import each other, and no module grows past what one
reader can hold (about 600 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ms_meta"
MAX_MODULE_LINES = 600


def _package_imports() -> dict[str, dict[str, str]]:
    """subpackage -> {imported subpackage: first file that imports it}."""
    edges: dict[str, dict[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2:
            continue  # top-level modules (the package's own front door) are not a subpackage
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                bits = name.split(".")
                if bits[0] == "ms_meta" and len(bits) > 1 and (PACKAGE / bits[1]).is_dir():
                    if bits[1] != parts[0]:
                        edges.setdefault(parts[0], {}).setdefault(bits[1], str(path))
    return edges


def test_no_two_subpackages_import_each_other():
    edges = _package_imports()
    cycles = sorted(
        f"{a} -> {b} ({edges[a][b]}) and {b} -> {a} ({edges[b][a]})"
        for a in edges
        for b in edges[a]
        if a < b and a in edges.get(b, {})
    )
    assert not cycles, "\n".join(cycles)


def test_the_import_scan_sees_real_edges():
    edges = _package_imports()
    assert "tuning" in edges["one_shot"] and "feature" in edges["model"]


def test_no_module_is_much_longer_than_600_lines():
    long = sorted(
        f"{path.relative_to(PACKAGE)}: {n} lines"
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    )
    assert not long, "\n".join(long)
