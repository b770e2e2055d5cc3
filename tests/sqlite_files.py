"""Reads database files with Python's own sqlite3, independently of the package under test."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import legacy_path

OWNER_DEFAULT = re.compile(r"(user_id TEXT NOT NULL DEFAULT ')[^']*(')")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Runs one read-only query on a file (a WAL file needs its folder writable)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def file_execute(path: Path, *statements: str) -> None:
    """Runs statements on a file and commits them, as another program writing to it would."""
    connection = sqlite3.connect(path)
    try:
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


def file_master(path: Path, masked: bool = True) -> dict[str, str]:
    """`name -> sql` of every schema object with SQL, the Aerich table excluded."""
    rows = file_query(path, "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'aerich'")
    return {name: OWNER_DEFAULT.sub(r"\1<owner>\2", sql) if masked else sql for name, sql in rows}


def legacy_schema_sql() -> dict[str, str]:
    """`name -> sql` of every object in tests/fixtures/legacy/schema.sql, owner default masked."""
    objects: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in [*legacy_path("schema.sql").read_text(encoding="utf-8").splitlines(), "-- end: x"]:
        header = re.match(r"^-- (table|index|trigger|end): (\S+)", line)
        if header:
            text = "\n".join(lines).strip()
            if name and text:
                objects[name] = OWNER_DEFAULT.sub(r"\1<owner>\2", text.removesuffix(";"))
            name, lines = header.group(2), []
        elif name and not line.startswith("--"):
            lines.append(line)
    return objects


def file_dicts(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Runs one read-only query on a file; rows as dicts."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(sql, params)]
    finally:
        connection.close()


def file_rows(path: Path, table: str, order_by: str) -> list[dict[str, Any]]:
    """Every row of a table as dicts, in the order the legacy dumps use."""
    return file_dicts(path, f"SELECT * FROM {table} ORDER BY {order_by}")
