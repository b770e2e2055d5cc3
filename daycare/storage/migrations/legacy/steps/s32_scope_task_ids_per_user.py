"""20260304_scope_task_ids_per_user: rebuilds `tasks` with the key (user_id, id), and both trigger
tables with `user_id NOT NULL` and a composite foreign key to it.

A trigger with a blank user takes its task's user. Past the legacy code, where it stopped:
- a trigger without a task gets one first (`triggers_link_all`);
- a task with a blank user goes to the owner;
- a trigger whose task belongs to another user gets a copy of that task under its own user.
"""

from __future__ import annotations

import logging

from daycare.storage.errors import StorageError
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.rebuild import (
    objects_restore,
    objects_saved,
    rebuild_begin,
    rebuild_verify,
    rows_copy,
    rows_count,
)
from daycare.storage.migrations.legacy.step import LegacyStep
from daycare.storage.migrations.legacy.triggers import TRIGGER_TABLES, triggers_link_all
from daycare.storage.migrations.progress import ProgressCounter

NAME = "20260304_scope_task_ids_per_user"
REBUILT = ("tasks", *TRIGGER_TABLES)
TASK_COLUMNS = "id, user_id, title, description, code, created_at, updated_at, deleted_at"

log = logging.getLogger("daycare.storage.migrations.legacy")

TASKS_NEXT_SQL = """
                CREATE TABLE tasks_next (
                    id TEXT NOT NULL,
                    user_id TEXT NOT NULL,
                    title TEXT NOT NULL,
                    description TEXT,
                    code TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    deleted_at INTEGER,
                    PRIMARY KEY (user_id, id)
                );
"""

SWAP_SQL = """
DROP TABLE tasks_cron;
DROP TABLE tasks_heartbeat;
DROP TABLE tasks;
ALTER TABLE tasks_next RENAME TO tasks;
ALTER TABLE tasks_cron_next RENAME TO tasks_cron;
ALTER TABLE tasks_heartbeat_next RENAME TO tasks_heartbeat;
CREATE INDEX IF NOT EXISTS idx_tasks_user_id ON tasks(user_id);
CREATE INDEX IF NOT EXISTS idx_tasks_updated_at ON tasks(updated_at);
CREATE INDEX IF NOT EXISTS idx_tasks_cron_enabled ON tasks_cron(enabled);
CREATE INDEX IF NOT EXISTS idx_tasks_cron_updated_at ON tasks_cron(updated_at);
CREATE INDEX IF NOT EXISTS idx_tasks_cron_task_id ON tasks_cron(user_id, task_id);
CREATE INDEX IF NOT EXISTS idx_tasks_heartbeat_user_id ON tasks_heartbeat(user_id);
CREATE INDEX IF NOT EXISTS idx_tasks_heartbeat_updated_at ON tasks_heartbeat(updated_at);
CREATE INDEX IF NOT EXISTS idx_tasks_heartbeat_task_id ON tasks_heartbeat(user_id, task_id);
"""


def cron_next_sql(code: bool) -> str:
    """The legacy text of the new cron table (it becomes `"tasks_cron"` in sqlite_master)."""
    code_column = "\n                    code TEXT NOT NULL," if code else ""
    return f"""
        CREATE TABLE tasks_cron_next (
            id TEXT PRIMARY KEY,
            task_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            schedule TEXT NOT NULL,{code_column}
            agent_id TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            delete_after_run INTEGER NOT NULL DEFAULT 0,
            last_run_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            FOREIGN KEY (user_id, task_id) REFERENCES tasks_next(user_id, id)
        );
"""


def heartbeat_next_sql(code: bool) -> str:
    """The legacy text of the new heartbeat table."""
    code_column = "\n            code TEXT NOT NULL," if code else ""
    return f"""
        CREATE TABLE tasks_heartbeat_next (
            id TEXT PRIMARY KEY,
            task_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            title TEXT NOT NULL,{code_column}
            last_run_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            FOREIGN KEY (user_id, task_id) REFERENCES tasks_next(user_id, id)
        );
"""


def trigger_copy_sql(table: str, columns: list[str]) -> str:
    """INSERT ... SELECT from `table` (alias r) into `<table>_next`; a blank user takes the task's user."""
    chosen = ", ".join(
        "COALESCE(NULLIF(TRIM(r.user_id), ''), t.user_id)" if c == "user_id" else f"r.{c}" for c in columns
    )
    return (
        f"INSERT INTO {table}_next ({', '.join(columns)}) SELECT {chosen}"
        f" FROM {table} r LEFT JOIN tasks t ON t.id = r.task_id"
    )


async def scoped(ctx: StepContext) -> bool:
    """True when the tasks key is (user_id, id) and both trigger tables already use it."""
    keys = await ctx.rows("SELECT name FROM pragma_table_info('tasks') WHERE pk > 0 ORDER BY pk")
    if [row["name"] for row in keys] != ["user_id", "id"]:
        return False
    for table in TRIGGER_TABLES:
        links = {
            (row["from"], row["to"])
            for row in await ctx.rows("SELECT * FROM pragma_foreign_key_list(?)", [table])
            if row["table"] == "tasks"
        }
        if not {("task_id", "id"), ("user_id", "user_id")} <= links:
            return False
    return True


async def tasks_give_owner(ctx: StepContext) -> None:
    """Gives a task with a blank user to the owner (the legacy code stopped here)."""
    blank = await ctx.rows("SELECT id FROM tasks WHERE user_id IS NULL OR TRIM(user_id) = ''")
    owner_id = await ctx.owner_id()
    if blank and owner_id is None:
        raise StorageError(f"Cannot scope tasks by user; task {blank[0]['id']} has no user_id.")
    for task in blank:
        await ctx.execute("UPDATE tasks SET user_id = ? WHERE id = ?", [owner_id, task["id"]])
        log.info("Gave task %s, which had no user, to the owner %s.", task["id"], owner_id)


async def tasks_copy_for_users(ctx: StepContext, counter: ProgressCounter) -> None:
    """Copies a task under the user of each trigger that points at another user's task."""
    wanted = await ctx.rows(
        "SELECT r.user_id, r.task_id FROM"
        " (SELECT user_id, task_id FROM tasks_cron_next UNION SELECT user_id, task_id FROM tasks_heartbeat_next) r"
        " JOIN tasks t ON t.id = r.task_id"
        " WHERE NOT EXISTS (SELECT 1 FROM tasks_next n WHERE n.user_id = r.user_id AND n.id = r.task_id)"
    )
    for link in wanted:
        await ctx.execute(
            f"INSERT INTO tasks_next ({TASK_COLUMNS}) SELECT id, ?, title, description, code, created_at, updated_at,"
            " deleted_at FROM tasks WHERE id = ?",
            [link["user_id"], link["task_id"]],
        )
        log.info(
            "Copied task %s for user %s, whose trigger used another user's task.", link["task_id"], link["user_id"]
        )
    counter.advance(len(wanted))


async def checks(ctx: StepContext) -> None:
    """The legacy checks on the new tables; after the fixes above they only catch the unexpected."""
    for table, kind in (("tasks_cron", "cron"), ("tasks_heartbeat", "heartbeat")):
        blank = await ctx.row(f"SELECT id FROM {table}_next WHERE user_id IS NULL OR TRIM(user_id) = '' LIMIT 1")
        if blank:
            raise StorageError(f"Cannot scope {kind} trigger {blank['id']}; no user_id could be resolved.")
        orphan = await ctx.row(
            f"SELECT r.id FROM {table}_next r LEFT JOIN tasks_next t ON t.user_id = r.user_id AND t.id = r.task_id"
            " WHERE t.id IS NULL LIMIT 1"
        )
        if orphan:
            raise StorageError(f"Cannot scope {kind} trigger {orphan['id']}; task reference is missing in user scope.")


async def run(ctx: StepContext) -> None:
    if not await ctx.columns("tasks") or await scoped(ctx):
        return
    await triggers_link_all(ctx)
    await tasks_give_owner(ctx)
    duplicate = await ctx.row("SELECT user_id, id FROM tasks GROUP BY user_id, id HAVING COUNT(1) > 1 LIMIT 1")
    if duplicate:
        raise StorageError(
            f"Cannot scope tasks by user; duplicate task id {duplicate['id']} already exists for user "
            f"{duplicate['user_id']}."
        )

    await rebuild_begin(ctx, REBUILT)
    saved = {table: await objects_saved(ctx, table) for table in REBUILT}
    counter = ctx.counter("Rebuilding tasks and their triggers", await rows_count(ctx, REBUILT))
    await ctx.script(TASKS_NEXT_SQL)
    await rows_copy(
        ctx, counter, f"INSERT INTO tasks_next ({TASK_COLUMNS}) SELECT {TASK_COLUMNS} FROM tasks t", "tasks", "t"
    )
    for table, create in (("tasks_cron", cron_next_sql), ("tasks_heartbeat", heartbeat_next_sql)):
        code = "code" in await ctx.columns(table)
        await ctx.script(create(code))
        columns = await ctx.columns(f"{table}_next")
        await rows_copy(ctx, counter, trigger_copy_sql(table, columns), table, "r")
    await tasks_copy_for_users(ctx, counter)
    await checks(ctx)
    await ctx.script(SWAP_SQL)
    for table, objects in saved.items():
        await objects_restore(ctx, table, objects)
    await rebuild_verify(ctx, REBUILT)
    counter.finish()


STEP = LegacyStep(NAME, run)
