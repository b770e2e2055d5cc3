"""20260225_require_usertag: gives every user without a usertag a generated one, then makes it required
(a unique index and insert/update triggers)."""

from __future__ import annotations

from daycare.storage.errors import StorageError
from daycare.storage.identifiers import nametag_generate
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260225_require_usertag"
ATTEMPTS = 1000

REQUIRED_SQL = """
            CREATE UNIQUE INDEX IF NOT EXISTS idx_users_usertag_required ON users(usertag);

            CREATE TRIGGER IF NOT EXISTS trg_users_usertag_required_insert
            BEFORE INSERT ON users
            FOR EACH ROW
            WHEN NEW.usertag IS NULL OR trim(NEW.usertag) = ''
            BEGIN
                SELECT RAISE(ABORT, 'users.usertag is required');
            END;

            CREATE TRIGGER IF NOT EXISTS trg_users_usertag_required_update
            BEFORE UPDATE OF usertag ON users
            FOR EACH ROW
            WHEN NEW.usertag IS NULL OR trim(NEW.usertag) = ''
            BEGIN
                SELECT RAISE(ABORT, 'users.usertag is required');
            END;
"""


def tag_unique(taken: set[str]) -> str | None:
    """A generated tag not in `taken`, or None after the legacy number of attempts."""
    for _ in range(ATTEMPTS):
        candidate = nametag_generate()
        if candidate not in taken:
            return candidate
    return None


async def run(ctx: StepContext) -> None:
    if "usertag" not in await ctx.columns("users"):
        return
    rows = await ctx.rows("SELECT usertag FROM users WHERE usertag IS NOT NULL AND trim(usertag) <> ''")
    taken = {str(row["usertag"]) for row in rows}
    missing = await ctx.rows(
        "SELECT id FROM users WHERE usertag IS NULL OR trim(usertag) = '' ORDER BY created_at ASC, id ASC"
    )
    for user in missing:
        tag = tag_unique(taken)
        if tag is None:
            raise StorageError(f"Failed to build unique usertag for user: {user['id']}")
        await ctx.execute("UPDATE users SET usertag = ? WHERE id = ?", [tag, user["id"]])
        taken.add(tag)
    await ctx.script(REQUIRED_SQL)


STEP = LegacyStep(NAME, run)
