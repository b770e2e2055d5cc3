"""20260301_add_token_stats: creates hourly token usage rollups (composite primary key) and their indexes."""

from __future__ import annotations

from daycare.storage.migrations.legacy.step import sql_step

# The text is the legacy text: SQLite keeps it in sqlite_master, and the final schema must match.
SQL = """
            CREATE TABLE IF NOT EXISTS token_stats_hourly (
                hour_start INTEGER NOT NULL,
                user_id TEXT NOT NULL,
                agent_id TEXT NOT NULL,
                model TEXT NOT NULL,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                cache_read_tokens INTEGER NOT NULL DEFAULT 0,
                cache_write_tokens INTEGER NOT NULL DEFAULT 0,
                cost REAL NOT NULL DEFAULT 0,
                PRIMARY KEY (hour_start, user_id, agent_id, model),
                FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
                FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE
            );
CREATE INDEX IF NOT EXISTS idx_token_stats_hourly_hour_start ON token_stats_hourly(hour_start);
CREATE INDEX IF NOT EXISTS idx_token_stats_hourly_user_hour ON token_stats_hourly(user_id, hour_start);
CREATE INDEX IF NOT EXISTS idx_token_stats_hourly_agent_hour ON token_stats_hourly(agent_id, hour_start);
"""

STEP = sql_step("20260301_add_token_stats", SQL)
