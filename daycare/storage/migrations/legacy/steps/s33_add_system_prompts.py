"""20260224_add_system_prompts: creates configurable system prompts (last in the chain despite its date)."""

from __future__ import annotations

from daycare.storage.migrations.legacy.step import sql_step

# The text is the legacy text: SQLite keeps it in sqlite_master, and the final schema must match.
SQL = """
            CREATE TABLE IF NOT EXISTS system_prompts (
                id TEXT PRIMARY KEY,
                scope TEXT NOT NULL,
                user_id TEXT,
                kind TEXT NOT NULL,
                condition TEXT,
                prompt TEXT NOT NULL,
                enabled INTEGER NOT NULL DEFAULT 1,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );
CREATE INDEX IF NOT EXISTS idx_system_prompts_scope ON system_prompts(scope);
CREATE INDEX IF NOT EXISTS idx_system_prompts_user_id ON system_prompts(user_id);
"""

STEP = sql_step("20260224_add_system_prompts", SQL)
