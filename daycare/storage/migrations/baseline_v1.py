"""The baseline's rules, version 1: frozen together with `migrations/models/0_20261126000000_baseline.py`.

Never edit this file. Migration 0 imports it, so an edit would silently change what an old
migration does to the next file it adopts; `tests/storage/migrations/test_baseline_v1.py` pins
its sha256. To change a rule, copy this module to `baseline_v2.py` and change the copy; add a
migration `migrations/models/<n>_<name>.py` whose `upgrade()` uses it to bring the files made
under these rules to the new ones, and point the live code that reads these rules (`inspection`,
`adoption`, `schema_check`, `migrate`) at the new module. Migration 0 keeps importing this one,
so the files it adopts come out as they always did.

The rules. A new, empty file gets the legacy final schema (SCHEMA_SQL of the migration), the 33
legacy step names and a bootstrap owner, so that it looks like a file the legacy code made. A
legacy file that recorded all 33 steps is adopted as it is when its schema equals that schema
(the owner id in the DEFAULT of agents.user_id and the tables of the known extra legacy steps are
tolerated): only the `aerich` table is added. A legacy file that lacks steps, or a new file
beside legacy data folders, first gets the missing steps of the legacy chain, then the same
check. Anything else is refused before anything changes.

The mechanisms are live code that reads both sides of a comparison the same way: `catalog`
(facts about a file, schema description and comparison) and the legacy chain in `legacy/`
(history, never edited either).
"""

from __future__ import annotations

import logging

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.clock import now_ms
from daycare.storage.errors import DatabaseRefused
from daycare.storage.identifiers import cuid_create, nametag_generate
from daycare.storage.migrations.catalog import (
    LEGACY_TABLE,
    FileFacts,
    TableIssues,
    TableSchema,
    database_display,
    file_facts,
    schema_compare,
    schema_describe,
    schema_of_script,
    schema_report,
)
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.legacy.catch_up import database_folder, legacy_catch_up, legacy_folders_found
from daycare.storage.migrations.progress import ProgressLog

log = logging.getLogger("daycare.storage")

# Steps that some releases ran and a later release dropped, with the tables they left behind.
# A file carrying them is still a legacy file; what they left stays untouched.
LEGACY_EXTRA_STEPS: dict[str, frozenset[str]] = {
    "20260221_add_permission_requests": frozenset({"permission_requests"}),
}

# SCHEMA_SQL holds this where the legacy bootstrap wrote the owner's id (the DEFAULT of agents.user_id).
OWNER_ID_PLACEHOLDER = "__OWNER_ID__"

# Columns whose DEFAULT is the bootstrap owner's id, which differs in every file.
OWNER_DEFAULTS: frozenset[tuple[str, str]] = frozenset({("agents", "user_id")})

# The table Tortoise would generate for aerich.models.Aerich, minus AUTOINCREMENT: adopting a
# legacy file must leave sqlite_sequence exactly as it was, and Aerich only needs a rowid key.
AERICH_TABLE_SQL = """CREATE TABLE IF NOT EXISTS "aerich" (
    "id" INTEGER PRIMARY KEY NOT NULL,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSON NOT NULL
);"""

_OWN_DATABASE = "Point daycare at its own database with --db or DAYCARE_DB_URL; this file was left unchanged."


def file_kind(facts: FileFacts) -> str:
    """`aerich` (adopted already), `legacy` (it has `_migrations`), `fresh` (no tables) or `foreign`."""
    if facts.versions:
        return "aerich"
    if LEGACY_TABLE in facts.tables:
        return "legacy"
    return "foreign" if facts.tables else "fresh"


def legacy_missing(steps: frozenset[str]) -> list[str]:
    """The legacy steps a file never ran, in legacy order."""
    return [name for name in LEGACY_STEPS if name not in steps]


def legacy_leftovers(steps: frozenset[str]) -> frozenset[str]:
    """The tables left by the extra legacy steps a file ran; they are kept as they are."""
    return frozenset().union(*(LEGACY_EXTRA_STEPS.get(name, frozenset()) for name in steps))


async def legacy_steps_missing(conn: BaseDBAsyncClient, facts: FileFacts) -> list[str]:
    """The legacy steps the file needs before adoption, in legacy order; empty when it needs none.

    A new file beside the data folders of releases before SQLite needs all of them: the legacy
    code imported those folders on its first start.
    """
    kind = file_kind(facts)
    if kind == "legacy":
        return legacy_missing(facts.legacy_steps)
    if kind == "fresh" and legacy_folders_found(await database_folder(conn)):
        return list(LEGACY_STEPS)
    return []


_legacy_schemas: dict[str, dict[str, TableSchema]] = {}


async def legacy_schema(schema_sql: str) -> dict[str, TableSchema]:
    """The legacy final schema: what `schema_sql` makes of an empty database (built once per process)."""
    if schema_sql not in _legacy_schemas:
        _legacy_schemas[schema_sql] = await schema_of_script(schema_sql)
    return _legacy_schemas[schema_sql]


def schema_tolerant_compare(
    expected: dict[str, TableSchema], actual: dict[str, TableSchema], legacy_steps: frozenset[str]
) -> list[TableIssues]:
    """The differences that count: the owner id defaults and the extra legacy steps' tables are tolerated."""
    return schema_compare(expected, actual, legacy_leftovers(legacy_steps), OWNER_DEFAULTS)


async def legacy_drift(conn: BaseDBAsyncClient, facts: FileFacts, schema_sql: str) -> list[TableIssues]:
    """How the file behind `conn` differs from the legacy final schema; empty when it does not."""
    return schema_tolerant_compare(await legacy_schema(schema_sql), await schema_describe(conn), facts.legacy_steps)


async def baseline_check(conn: BaseDBAsyncClient, facts: FileFacts, schema_sql: str) -> None:
    """Raises DatabaseRefused, with what was found and what to do, unless the baseline can take the file.

    A legacy file that lacks steps is only checked for tables no Daycare release made; the
    full check follows once its missing steps ran.
    """
    kind = file_kind(facts)
    if kind == "fresh":
        return
    location = await database_display(conn)
    if kind == "foreign":
        tables = sorted(facts.tables)
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise DatabaseRefused(f"{location} is a SQLite file of another application (tables: {shown}).", _OWN_DATABASE)
    if kind == "aerich":
        raise DatabaseRefused(
            f"{location} is under Aerich already: the baseline applies only to a new file or a legacy file.",
            "The file was left unchanged.",
        )
    if legacy_missing(facts.legacy_steps):
        expected = await legacy_schema(schema_sql)
        known = set(LEGACY_STEPS) | set(LEGACY_EXTRA_STEPS)
        strangers = sorted(facts.tables - set(expected) - legacy_leftovers(facts.legacy_steps))
        if strangers or (facts.legacy_steps and not facts.legacy_steps & known):
            found = "no known legacy step"
            if strangers:
                found = f"tables no Daycare release made: {', '.join(strangers[:5])}"
            raise DatabaseRefused(
                f"{location} has a _migrations table but is not a Daycare file ({found}).", _OWN_DATABASE
            )
        return
    issues = await legacy_drift(conn, facts, schema_sql)
    if issues:
        raise DatabaseRefused(
            f"The schema of {location} differs from the legacy final schema:",
            schema_report(issues),
            "The file was left unchanged. Restore it from a backup (<name>.bak-<time>), or repair the objects listed.",
        )


def _sql_text(value: str) -> str:
    """An SQL string literal, for the generated id and nametag the fresh script writes."""
    return "'" + value.replace("'", "''") + "'"


def baseline_fresh_sql(schema_sql: str) -> str:
    """The `aerich` table, the legacy schema with a new owner id, the legacy step names and the bootstrap owner."""
    owner_id = cuid_create()
    now = now_ms()
    steps = ",\n".join(f"({_sql_text(name)}, {now})" for name in LEGACY_STEPS)
    owner = f"({_sql_text(owner_id)}, 1, {now}, {now}, NULL, NULL, {_sql_text(nametag_generate())})"
    return "\n".join(
        (
            AERICH_TABLE_SQL,
            schema_sql.replace(OWNER_ID_PLACEHOLDER, owner_id),
            f"INSERT INTO _migrations (name, applied_at) VALUES\n{steps};",
            "INSERT INTO users (id, is_owner, created_at, updated_at, parent_user_id, name, nametag)",
            f"VALUES {owner};",
        )
    )


async def baseline_upgrade(conn: BaseDBAsyncClient, schema_sql: str) -> str:
    """Migration 0's `upgrade()`: checks the file, runs the legacy steps it lacks, returns the SQL that adopts it.

    Under `aerich upgrade` the steps run here, inside the migration's transaction; under
    `daycare upgrade` and engine start they have already run, each in its own transaction.
    """
    facts = await file_facts(conn)
    await baseline_check(conn, facts, schema_sql)
    missing = await legacy_steps_missing(conn, facts)
    if missing:
        await legacy_catch_up(conn, missing, notify=log.info, progress=ProgressLog(log))
        facts = await file_facts(conn)
        await baseline_check(conn, facts, schema_sql)
    return baseline_fresh_sql(schema_sql) if file_kind(facts) == "fresh" else AERICH_TABLE_SQL
