"""20260222_add_expose: creates expose endpoints."""

from __future__ import annotations

from daycare.storage.migrations.legacy.step import sql_step

# The text is the legacy text: SQLite keeps it in sqlite_master, and the final schema must match.
SQL = """
      CREATE TABLE IF NOT EXISTS expose_endpoints (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        target TEXT NOT NULL,
        provider TEXT NOT NULL,
        domain TEXT NOT NULL,
        mode TEXT NOT NULL,
        auth TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );

      CREATE INDEX IF NOT EXISTS idx_expose_endpoints_user
        ON expose_endpoints(user_id);
      CREATE INDEX IF NOT EXISTS idx_expose_endpoints_domain
        ON expose_endpoints(domain);
"""

STEP = sql_step("20260222_add_expose", SQL)
