"""Helpers for the legacy-upgrade tests: reading a file back, the expected schema, running steps."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from daycare.storage.db.database import Database
from daycare.storage.migrations.legacy.catch_up import database_folder, legacy_catch_up
from daycare.storage.migrations.legacy.chain import LEGACY_CHAIN
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.progress import progress_none

STEPS = {step.name: step for step in LEGACY_CHAIN}


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection with rows as sqlite3.Row (a WAL file needs its folder writable)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    return connection


def tables_dump(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table but Aerich's, ordered by its primary key (sqlite_sequence by name)."""
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
            dump[table] = [dict(row) for row in connection.execute(f'SELECT * FROM "{table}" ORDER BY {order}')]
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
