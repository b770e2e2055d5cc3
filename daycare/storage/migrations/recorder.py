"""Reads and writes the `aerich` table exactly as the Aerich CLI does."""

from __future__ import annotations

from aerich.models import Aerich
from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db.database import APP
from daycare.storage.migrations.loader import MigrationFile

# The table Tortoise would generate for aerich.models.Aerich, minus AUTOINCREMENT: adopting a
# legacy file must leave sqlite_sequence exactly as it was, and Aerich only needs a rowid key.
AERICH_TABLE_SQL = """CREATE TABLE IF NOT EXISTS "aerich" (
    "id" INTEGER PRIMARY KEY NOT NULL,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSON NOT NULL
);"""


async def versions_applied(conn: BaseDBAsyncClient) -> list[str]:
    """The recorded versions of this app, oldest first; empty when there is no aerich table."""
    tables = await conn.execute_query_dict("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aerich'")
    if not tables:
        return []
    rows = await Aerich.filter(app=APP).using_db(conn).order_by("id").values_list("version", flat=True)
    return [str(version) for version in rows]


async def version_record(conn: BaseDBAsyncClient, migration: MigrationFile) -> None:
    """Records a file as applied, with its models state, like `aerich upgrade`."""
    await conn.execute_script(AERICH_TABLE_SQL)
    await Aerich.create(version=migration.version, app=APP, content=migration.models_state, using_db=conn)
