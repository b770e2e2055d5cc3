"""The text and parameters of the repositories' write statements.

Every create is one `INSERT ... ON CONFLICT DO UPDATE` statement, never REPLACE: REPLACE
deletes the row first, which would fire ON DELETE CASCADE on its children. Only identifiers
are built into statement text; every value is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def upsert_statement(
    table: str, columns: Sequence[str], conflict: Sequence[str] = ("id",), updates: Sequence[str] | None = None
) -> str:
    """INSERT of `columns` that, on a `conflict` clash, sets `updates` (default: every non-key column)."""
    updated = [column for column in columns if column not in conflict] if updates is None else list(updates)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT({', '.join(conflict)}) DO UPDATE SET "
        + ", ".join(f"{column} = excluded.{column}" for column in updated)
    )


def column_values(record: object, columns: Sequence[str]) -> list[Any]:
    """The record's values in column order, booleans as the 0/1 integers the legacy code wrote."""
    values = [getattr(record, column) for column in columns]
    return [int(value) if isinstance(value, bool) else value for value in values]


def column_map(record: object, columns: Sequence[str]) -> dict[str, Any]:
    """The record's values by column name, for a queryset `update(**...)`."""
    return dict(zip(columns, column_values(record, columns), strict=True))
