"""Reads what kind of file a database is, without changing it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.migrations.baseline_v1 import file_kind, legacy_leftovers, legacy_missing
from daycare.storage.migrations.catalog import FileFacts, file_facts


class FileKind(enum.Enum):
    FRESH = "fresh"  # no tables at all: a new or empty file
    LEGACY = "legacy"  # written by the TypeScript storage layer, not yet under Aerich
    AERICH = "aerich"  # already adopted; Aerich migrations decide what is pending
    FOREIGN = "foreign"  # SQLite, but not a Daycare file


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
    """Classifies the file behind `conn` with read-only queries, by the baseline's rule."""
    facts = await file_facts(conn)
    return FileState(facts.tables, facts.legacy_steps, facts.versions, FileKind(file_kind(facts)))
