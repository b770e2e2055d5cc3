"""What the project's migration files make of a file: their versions, and the objects added after the baseline."""

from __future__ import annotations

from daycare.storage.migrations.loader import migrations_load
from tests.sqlite_files import legacy_schema_sql

VERSIONS = tuple(migration.version for migration in migrations_load())
BASELINE = VERSIONS[0]

# Every schema object the migrations after the baseline create, as sqlite_master keeps its text.
LATER_OBJECTS = {
    "idx_signals_delayed_repeat": (
        'CREATE INDEX "idx_signals_delayed_repeat" ON "signals_delayed" ("user_id", "type", "repeat_key")'
    ),
    "trigger_runs": (
        'CREATE TABLE "trigger_runs" (\n'
        '    "id" TEXT NOT NULL PRIMARY KEY,\n'
        '    "occurrence_at" INTEGER NOT NULL,\n'
        '    "claimed_at" INTEGER NOT NULL,\n'
        '    "engine" TEXT NOT NULL\n'
        ")"
    ),
}


# The tables of those migrations (Daycare's own; a legacy file's upgrade adds them, empty).
LATER_TABLES = frozenset({"trigger_runs"})


def migrated_schema_sql() -> dict[str, str]:
    """`name -> sql` of a file brought up to date: schema.sql plus exactly the objects of later migrations."""
    legacy = legacy_schema_sql()
    assert not legacy.keys() & LATER_OBJECTS.keys()
    return {**legacy, **LATER_OBJECTS}
