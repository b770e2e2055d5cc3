"""What the baseline migration does, under `daycare upgrade`, engine start or `aerich upgrade`.

A fresh file gets the legacy final schema, the 33 legacy step names and a bootstrap owner,
so that it looks exactly like a file the legacy code made. A complete legacy file is
checked and adopted as it is: no table is rebuilt and no row rewritten. A legacy file that
lacks legacy steps (or a new file beside legacy data folders) first gets them, inside the
baseline's transaction; `daycare upgrade` has already run them before it gets here. Anything
else is refused before anything changes.
"""

from __future__ import annotations

import logging
import time

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.migrations.adoption import adoption_check
from daycare.storage.errors import DatabaseRefused
from daycare.storage.identifiers import cuid_create, nametag_generate
from daycare.storage.migrations.inspection import FileKind, file_inspect
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.legacy.catch_up import legacy_catch_up, legacy_steps_missing
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.migrations.progress import ProgressLog
from daycare.storage.migrations.recorder import AERICH_TABLE_SQL

log = logging.getLogger("daycare.storage")

OWNER_ID_PLACEHOLDER = "__OWNER_ID__"


def sql_text(value: str) -> str:
    """An SQL string literal, for the generated id and nametag the fresh script writes."""
    return "'" + value.replace("'", "''") + "'"


def baseline_fresh_sql(schema_sql: str) -> str:
    """The legacy schema with a new owner id, the legacy step names, and the bootstrap owner."""
    owner_id = cuid_create()
    now = int(time.time() * 1000)
    steps = ",\n".join(f"({sql_text(name)}, {now})" for name in LEGACY_STEPS)
    owner = f"({sql_text(owner_id)}, 1, {now}, {now}, NULL, NULL, {sql_text(nametag_generate())})"
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
    """The baseline's `upgrade()`: checks the file and returns the SQL that adopts it."""
    state = await file_inspect(conn)
    missing = await legacy_steps_missing(conn, state)
    if missing:
        await legacy_catch_up(conn, missing, notify=log.info, progress=ProgressLog(log))
        state = await file_inspect(conn)
    await adoption_check(conn, state, migrations_load())
    if state.kind is FileKind.FRESH:
        return baseline_fresh_sql(schema_sql)
    if state.kind is FileKind.LEGACY:
        return AERICH_TABLE_SQL
    raise DatabaseRefused("The baseline migration applies only to a new file or a legacy file.")
