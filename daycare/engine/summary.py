"""The one line `daycare start` logs: where the database is, its schema state, what it holds, what runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from daycare.storage.db.database import Database
from daycare.storage.migrations.migrate import database_status

_COUNTS = (
    "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM agents) AS agents, "
    "(SELECT count(*) FROM tasks_cron) AS cron_triggers, (SELECT count(*) FROM tasks_heartbeat) AS heartbeat_triggers"
)


@dataclass(frozen=True, slots=True)
class EngineSummary:
    database: str
    schema: str
    users: int
    agents: int
    cron_triggers: int
    heartbeat_triggers: int
    services: tuple[str, ...]
    leads: bool | None = None  # on a shared database: whether this engine leads the schedulers

    def line(self) -> str:
        counts = ", ".join(
            _counted(number, noun)
            for number, noun in (
                (self.users, "user"),
                (self.agents, "agent"),
                (self.cron_triggers, "cron trigger"),
                (self.heartbeat_triggers, "heartbeat trigger"),
            )
        )
        role = ""
        if self.leads is not None:
            role = "; shared database: " + (
                "this engine leads (it runs the schedulers)"
                if self.leads
                else "this engine follows (another runs the schedulers; it takes over if that one stops)"
            )
        return (
            f"engine started on {self.database} (schema {self.schema}); {counts}; "
            f"services: {', '.join(self.services) or 'none'}{role}"
        )


def _counted(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


async def engine_summary(db: Database, services: Sequence[str], leads: bool | None = None) -> EngineSummary:
    """Reads the counts and the migration state of an open, migrated database."""
    status = await database_status(db)
    pending = f"{len(status.pending)} pending" if status.pending else "none pending"
    schema = f"{status.state.kind.value}: {_counted(len(status.applied), 'migration')} applied, {pending}"
    rows = await db.connection().execute_query_dict(_COUNTS)
    counts = rows[0]
    return EngineSummary(
        db.location.display,
        schema,
        counts["users"],
        counts["agents"],
        counts["cron_triggers"],
        counts["heartbeat_triggers"],
        tuple(services),
        leads,
    )
