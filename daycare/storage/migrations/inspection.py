"""Reads what kind of file a database is, without changing it (on PostgreSQL: its current schema)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db.dialect import dialect_of
from daycare.storage.db.location import POSTGRES
from daycare.storage.migrations.baseline_v1 import file_kind, legacy_leftovers, legacy_missing
from daycare.storage.migrations.catalog import FileFacts, file_facts


class FileKind(enum.Enum):
    FRESH = "fresh"  # no tables at all: a new or empty file (or PostgreSQL schema)
    LEGACY = "legacy"  # written by the TypeScript storage layer, not yet under Aerich (SQLite only)
    AERICH = "aerich"  # already adopted; Aerich migrations decide what is pending
    FOREIGN = "foreign"  # a database of the right dialect, but not Daycare's


@dataclass(frozen=True)
class FileState(FileFacts):
    """What a file holds (its tables and the migrations it records) and what kind of file that makes it."""

    kind: FileKind

    @property
    def legacy_missing(self) -> list[str]:
        """The legacy steps this file never ran, in legacy order."""
        return legacy_missing(self.legacy_steps)

    @property
    def legacy_leftovers(self) -> frozenset[str]:
        """Tables left by extra legacy steps that this file ran; they are kept as they are."""
        return legacy_leftovers(self.legacy_steps)


async def file_inspect(conn: BaseDBAsyncClient) -> FileState:
    """Classifies the file behind `conn` with read-only queries, by the baseline's rule.

    No legacy PostgreSQL database exists, so a PostgreSQL schema with a `_migrations` table but
    no Aerich record is FOREIGN.
    """
    facts = await file_facts(conn)
    kind = FileKind(file_kind(facts))
    if kind is FileKind.LEGACY and dialect_of(conn) == POSTGRES:
        kind = FileKind.FOREIGN
    return FileState(facts.tables, facts.legacy_steps, facts.versions, kind)
