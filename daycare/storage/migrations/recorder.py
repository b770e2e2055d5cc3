"""Reads and writes the `aerich` table exactly as the Aerich CLI does.

The baseline migration of each chain creates the table (SQLite: `baseline_v1.AERICH_TABLE_SQL`;
PostgreSQL: the chain's migration 0); every later file finds it there.
"""

from __future__ import annotations

from pypika_tortoise.queries import Table
from pypika_tortoise.terms import Field
from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db import postgres, sqlite
from daycare.storage.db.database import APP
from daycare.storage.db.dialect import dialect_of
from daycare.storage.db.location import POSTGRES
from daycare.storage.db.statements import Statement, slot
from daycare.storage.migrations.loader import MigrationFile

AERICH_TABLE = "aerich"


# Statements built per dialect rather than Aerich's queryset and create(): Tortoise keeps a model's
# base query and INSERT text per model and connection name, not per dialect, so a process that
# opened both a SQLite and a PostgreSQL database (a copy, the equivalence test) would send one
# dialect's SQL to the other.
_VERSIONS = Statement(
    lambda query: (
        query.from_(Table(AERICH_TABLE))
        .select("version")
        .where(Field("app", table=Table(AERICH_TABLE)) == slot("app"))
        .orderby("id")
    )
)
_RECORD = Statement(
    lambda query: (
        query.into(Table(AERICH_TABLE))
        .columns("version", "app", "content")
        .insert(slot("version"), slot("app"), slot("content"))
    )
)


async def catalog_table_names(conn: BaseDBAsyncClient) -> frozenset[str]:
    """Every table of the database behind `conn`: the SQLite file's, or the PostgreSQL current schema's."""
    if dialect_of(conn) == POSTGRES:
        return await postgres.table_names(conn)
    return await sqlite.table_names(conn)


async def versions_applied(conn: BaseDBAsyncClient, tables: frozenset[str] | None = None) -> list[str]:
    """The recorded versions of this app, oldest first; empty when there is no aerich table.

    `tables`: the database's tables when the caller has just read them (saves reading them again).
    """
    if AERICH_TABLE not in (await catalog_table_names(conn) if tables is None else tables):
        return []
    return [str(row["version"]) for row in await _VERSIONS.rows(conn, app=APP)]


async def version_record(conn: BaseDBAsyncClient, migration: MigrationFile) -> None:
    """Records a file as applied, with its models state encoded as Aerich's own field encodes it."""
    from aerich.models import Aerich  # Aerich loads only when a migration is recorded

    content = Aerich._meta.fields_map["content"].to_db_value(migration.models_state, Aerich)
    await _RECORD.run(conn, version=migration.version, app=APP, content=content)
