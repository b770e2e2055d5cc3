"""The ORM is the only way to the database: no driver imports, no generate_schemas."""

from __future__ import annotations

import ast
import re
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


SQL_TEXT = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|ON\s+CONFLICT|PRAGMA|rowid|excluded\.)\b"
    r"|\s\?(\s|,|\)|$)",
    re.IGNORECASE,
)
RAW_CALLS = {"execute_query", "execute_query_dict", "execute_insert", "execute_many", "execute_script"}


def test_repositories_hold_no_sql_text() -> None:
    """Every repository statement comes from the ORM: no SQL strings, no raw execute calls."""
    modules = [*(PACKAGE / "storage" / "repositories").glob("*.py"), PACKAGE / "storage" / "facade.py"]
    offenders = []
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if SQL_TEXT.search(node.value):
                    offenders.append(f"{path.name}:{node.lineno}: {node.value[:60]!r}")
            elif isinstance(node, ast.Attribute) and node.attr in RAW_CALLS:
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert offenders == []


def test_the_sql_text_check_finds_sql() -> None:
    for text in ("SELECT id FROM users WHERE x = ?", "INSERT INTO inbox VALUES (?, ?)", "x = excluded.x", "PRAGMA x"):
        assert SQL_TEXT.search(text), text
    for text in ("Select a user", "Agent not found: x", "updated_at", "Cron task not found: ?x"):
        assert not SQL_TEXT.search(text), text
