"""20260221_add_inbox: creates the durable agent inbox."""

from __future__ import annotations

from daycare.storage.migrations.legacy.step import sql_step

# The text is the legacy text: SQLite keeps it in sqlite_master, and the final schema must match.
SQL = """
      CREATE TABLE IF NOT EXISTS inbox (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        posted_at INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL
      );

      CREATE INDEX IF NOT EXISTS idx_inbox_agent_order
        ON inbox(agent_id, posted_at);
"""

STEP = sql_step("20260221_add_inbox", SQL)
