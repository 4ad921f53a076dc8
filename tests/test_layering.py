"""The package layering of docs/architecture.md, checked on the source: `model/` imports nothing from
`service/` or `training/`; `training/` nothing from `service/`. (That the API process never imports
torch is checked by tests/service/api/test_auth_ops.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports, wherever the import statement sits."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package, forbidden",
                         [("model", {"service", "training"}), ("training", {"service"})])
def test_package_does_not_import(package, forbidden):
    bad = {str(p.relative_to(ROOT)): sorted(_imports(p) & forbidden)
           for p in sorted((ROOT / package).rglob("*.py"))}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{package}/ must not import {sorted(forbidden)}: {bad}"
