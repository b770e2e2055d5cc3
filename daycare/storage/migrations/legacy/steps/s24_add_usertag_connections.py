"""20260222_add_usertag_connections: adds a nullable, unique `users.usertag` and the `connections` table."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_add
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260222_add_usertag_connections"

CONNECTIONS_SQL = """
            CREATE TABLE IF NOT EXISTS connections (
                user_a_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                user_b_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                requested_a INTEGER NOT NULL DEFAULT 0,
                requested_b INTEGER NOT NULL DEFAULT 0,
                requested_a_at INTEGER,
                requested_b_at INTEGER,
                PRIMARY KEY (user_a_id, user_b_id),
                CHECK (user_a_id < user_b_id)
            );
"""


async def run(ctx: StepContext) -> None:
    if not await ctx.columns("users"):
        return
    await column_add(ctx, "users", "usertag", "TEXT")
    await ctx.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_users_usertag ON users(usertag) WHERE usertag IS NOT NULL")
    await ctx.script(CONNECTIONS_SQL)
    await ctx.execute("CREATE INDEX IF NOT EXISTS idx_connections_user_b ON connections(user_b_id)")


STEP = LegacyStep(NAME, run)
