"""20260220_add_users: creates users and user_connector_keys, and the index that allows one owner."""

from __future__ import annotations

from daycare.storage.migrations.legacy.step import sql_step

# The text is the legacy text: SQLite keeps it in sqlite_master, and the final schema must match.
SQL = """
      CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        is_owner INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );

      CREATE TABLE IF NOT EXISTS user_connector_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        connector_key TEXT NOT NULL UNIQUE
      );

      CREATE INDEX IF NOT EXISTS idx_user_connector_keys_user_id
        ON user_connector_keys(user_id);

      CREATE UNIQUE INDEX IF NOT EXISTS idx_users_single_owner
        ON users(is_owner)
        WHERE is_owner = 1;
"""

STEP = sql_step("20260220_add_users", SQL)
