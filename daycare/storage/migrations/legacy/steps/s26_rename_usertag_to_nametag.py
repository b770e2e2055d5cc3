"""20260226_rename_usertag_to_nametag: renames `users.usertag` to `nametag` and recreates its indexes and
triggers under the nametag names."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_rename
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260226_rename_usertag_to_nametag"

NAMETAG_SQL = """
DROP INDEX IF EXISTS idx_users_usertag;
DROP INDEX IF EXISTS idx_users_usertag_required;
CREATE UNIQUE INDEX IF NOT EXISTS idx_users_nametag ON users(nametag) WHERE nametag IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_users_nametag_required ON users(nametag);
DROP TRIGGER IF EXISTS trg_users_usertag_required_insert;
DROP TRIGGER IF EXISTS trg_users_usertag_required_update;

            CREATE TRIGGER IF NOT EXISTS trg_users_nametag_required_insert
            BEFORE INSERT ON users
            FOR EACH ROW
            WHEN NEW.nametag IS NULL OR trim(NEW.nametag) = ''
            BEGIN
                SELECT RAISE(ABORT, 'users.nametag is required');
            END;

            CREATE TRIGGER IF NOT EXISTS trg_users_nametag_required_update
            BEFORE UPDATE OF nametag ON users
            FOR EACH ROW
            WHEN NEW.nametag IS NULL OR trim(NEW.nametag) = ''
            BEGIN
                SELECT RAISE(ABORT, 'users.nametag is required');
            END;
"""


async def run(ctx: StepContext) -> None:
    if not await ctx.columns("users"):
        return
    await column_rename(ctx, "users", "usertag", "nametag")
    await ctx.script(NAMETAG_SQL)


STEP = LegacyStep(NAME, run)
