"""The ORM is the only way to the database: no driver imports, no generate_schemas."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daycare"
BACKEND = PACKAGE / "storage" / "db" / "backend.py"  # the Tortoise backend: the one place the driver lives
DRIVERS = {"sqlite3", "aiosqlite"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_backend_imports_a_sqlite_driver() -> None:
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if path != BACKEND and imported_modules(path) & DRIVERS
    ]
    assert offenders == []
    assert imported_modules(BACKEND) & DRIVERS == {"sqlite3"}


def test_nothing_generates_schemas() -> None:
    assert [p for p in PACKAGE.rglob("*.py") if "generate_schemas" in p.read_text(encoding="utf-8")] == []
