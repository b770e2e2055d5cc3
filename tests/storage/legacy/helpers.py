"""Helpers for the legacy-upgrade tests: reading a file back, the expected schema, running steps."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from daycare.storage.database import Database
from daycare.storage.legacy.catch_up import database_folder, legacy_catch_up
from daycare.storage.legacy.chain import LEGACY_CHAIN
from daycare.storage.legacy.context import StepContext
from daycare.storage.progress import progress_none
from tests.conftest import legacy_path

OWNER_DEFAULT = re.compile(r"(user_id TEXT NOT NULL DEFAULT ')[^']*(')")
STEPS = {step.name: step for step in LEGACY_CHAIN}


def schema_expected() -> dict[str, str]:
    """Every named object of ../shared/legacy/schema.sql: {name: sql}."""
    text = legacy_path("schema.sql").read_text(encoding="utf-8")
    found = re.finditer(
        r"^-- (?:table|index|trigger): (\S+) \(tbl_name=\S+\)\n(CREATE .*?);\n(?=\n|\Z)", text, re.S | re.M
    )
    return {match.group(1): OWNER_DEFAULT.sub(r"\1<owner>\2", match.group(2)) for match in found}


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    return connection


def schema_of(path: Path) -> dict[str, str]:
    """The sqlite_master text of a file's objects (Aerich's table aside), owner default masked."""
    with closing(connect(path)) as connection:
        rows = connection.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != 'aerich'")
        return {row["name"]: OWNER_DEFAULT.sub(r"\1<owner>\2", row["sql"]) for row in rows}


def tables_dump(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, ordered by its primary key (sqlite_sequence by name); Aerich's own aside."""
    dump = {}
    with closing(connect(path)) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'aerich'")
        ]
        for table in tables:
            keys = [
                r["name"]
                for r in sorted(connection.execute(f"PRAGMA table_info({table})"), key=lambda r: r["pk"])
                if r["pk"]
            ]
            order = ", ".join(f'"{key}"' for key in keys) or '"name"'
            found = [dict(row) for row in connection.execute(f'SELECT * FROM "{table}" ORDER BY {order}')]
            dump[table] = [row for row in found if table != "sqlite_sequence" or row["name"] != "aerich"]
    return dump


def context(db: Database, data_dir: Path | None = None) -> StepContext:
    """A step context on the database's current connection."""
    return StepContext(db.connection(), data_dir, progress_none)


async def steps_run(db: Database, names: Sequence[str], data_dir: Path | None = None) -> None:
    """Runs legacy steps without recording them (like the legacy specs calling `up(db)`)."""
    for name in names:
        async with db.in_transaction() as tx:
            await STEPS[name].run(StepContext(tx, data_dir, progress_none))


async def chain_run(db: Database, names: Sequence[str]) -> list[str]:
    """Runs and records legacy steps the way the catch-up does."""
    return await legacy_catch_up(db.connection(), names, notify=lambda _: None, progress=progress_none)


async def folder_of(db: Database) -> Path | None:
    return await database_folder(db.connection())


async def rows(db: Database, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return await db.connection().execute_query_dict(sql, list(params))


async def execute(db: Database, sql: str, params: Sequence[Any] = ()) -> None:
    await db.connection().execute_query(sql, list(params))
