"""Reads what kind of file a database is, without changing it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.schema import LegacyMigration
from daycare.storage.migrations.legacy import LEGACY_EXTRA_STEPS, LEGACY_STEPS
from daycare.storage.migrations.recorder import versions_applied

# Tables SQLite keeps for itself, and Aerich's bookkeeping table.
INTERNAL_TABLES = frozenset({"sqlite_sequence", "sqlite_stat1", "sqlite_stat4", "aerich"})


class FileKind(enum.Enum):
    FRESH = "fresh"  # no tables at all: a new or empty file
    LEGACY = "legacy"  # written by the TypeScript storage layer, not yet under Aerich
    AERICH = "aerich"  # already adopted; Aerich migrations decide what is pending
    FOREIGN = "foreign"  # SQLite, but not a Daycare file


@dataclass(frozen=True)
class FileState:
    """What a file holds: its kind, its tables, and the migrations it records."""

    kind: FileKind
    tables: frozenset[str]
    legacy_steps: frozenset[str]
    versions: tuple[str, ...]

    @property
    def legacy_missing(self) -> list[str]:
        """The legacy steps this file never ran, in legacy order."""
        return [name for name in LEGACY_STEPS if name not in self.legacy_steps]

    @property
    def legacy_unknown(self) -> list[str]:
        """Recorded legacy names that no release we know of used."""
        known = set(LEGACY_STEPS) | set(LEGACY_EXTRA_STEPS)
        return sorted(self.legacy_steps - known)

    @property
    def legacy_leftovers(self) -> frozenset[str]:
        """Tables left by extra legacy steps that this file ran; they are kept as they are."""
        return frozenset().union(*(LEGACY_EXTRA_STEPS.get(name, frozenset()) for name in self.legacy_steps))


async def file_inspect(conn: BaseDBAsyncClient) -> FileState:
    """Classifies the file behind `conn` with read-only queries."""
    rows = await conn.execute_query_dict("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = frozenset(str(row["name"]) for row in rows)
    versions = tuple(await versions_applied(conn))
    steps: frozenset[str] = frozenset()
    if "_migrations" in tables:
        names = await LegacyMigration.all().using_db(conn).values_list("name", flat=True)
        steps = frozenset(str(name) for name in names)
    if versions:
        kind = FileKind.AERICH
    elif "_migrations" in tables:
        kind = FileKind.LEGACY
    elif not tables - INTERNAL_TABLES:
        kind = FileKind.FRESH
    else:
        kind = FileKind.FOREIGN
    return FileState(kind, tables, steps, versions)
