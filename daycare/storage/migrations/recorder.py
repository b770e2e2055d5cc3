"""Reads and writes the `aerich` table exactly as the Aerich CLI does.

The baseline migration creates the table (`baseline_v1.AERICH_TABLE_SQL`); every later file
finds it there.
"""

from __future__ import annotations

from aerich.models import Aerich
from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db import sqlite
from daycare.storage.db.database import APP
from daycare.storage.migrations.loader import MigrationFile

AERICH_TABLE = "aerich"


async def versions_applied(conn: BaseDBAsyncClient) -> list[str]:
    """The recorded versions of this app, oldest first; empty when there is no aerich table."""
    if AERICH_TABLE not in await sqlite.table_names(conn):
        return []
    rows = await Aerich.filter(app=APP).using_db(conn).order_by("id").values_list("version", flat=True)
    return [str(version) for version in rows]


async def version_record(conn: BaseDBAsyncClient, migration: MigrationFile) -> None:
    """Records a file as applied, with its models state, like `aerich upgrade`."""
    await Aerich.create(version=migration.version, app=APP, content=migration.models_state, using_db=conn)
