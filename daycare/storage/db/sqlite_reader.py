"""A read-only sqlite3 connection to a SQLite file: the driver's one use outside the backend.

`daycare db status` reads a file under Aerich with it (`daycare.storage.migrations.status`), without
loading the ORM and the event loop, which take forty times as long as the reading. It runs the
same catalog query and the same ORM-built statements as the backend, and never writes or waits.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from pypika_tortoise.dialects import SQLLiteQuery

from daycare.storage.db import sqlite
from daycare.storage.db.statements import Statement


class ReadFailed(Exception):
    """The file could not be read as it is: missing, locked, damaged, not SQLite (the driver's error is the cause)."""


class SqliteReader:
    """Reads the SQLite file at `path` read-only; any driver error raises ReadFailed. Use it in a `with` block."""

    def __init__(self, path: Path) -> None:
        try:
            # timeout=0: a file that another connection locks is left to the caller, which knows how to wait.
            self._connection = sqlite3.connect(sqlite.read_only_uri(str(path)), uri=True, timeout=0)
        except sqlite3.Error as exc:
            raise ReadFailed(str(exc)) from exc

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._connection.close()

    def table_names(self) -> frozenset[str]:
        """Every table of the file, SQLite's own included (as `sqlite.table_names`)."""
        return frozenset(str(row[0]) for row in self._rows(sqlite.TABLE_NAMES, []))

    def rows(self, statement: Statement, **bound: Any) -> list[tuple[Any, ...]]:
        """Runs an ORM-built statement with the values `bound` to its slots; returns its rows."""
        return self._rows(*statement.sql(SQLLiteQuery, **bound))

    def _rows(self, sql: str, values: list[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._connection.execute(sql, values).fetchall()
        except sqlite3.Error as exc:
            raise ReadFailed(str(exc)) from exc
