"""SessionsRepository: the conversations of agents and their memory cursors (no cache).

`invalidated_at` and `processed_until` hold `session_history.id` values, not times (C1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q

from daycare.schema import Session
from daycare.storage.clock import now_ms
from daycare.storage.db.database import Database
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.limits import limit_check

_FIELDS = (
    "id",
    "agent_id",
    "inference_session_id",
    "created_at",
    "reset_message",
    "invalidated_at",
    "processed_until",
    "ended_at",
)
# A fixed, parameterised insert: it runs inside create_agent_with_session and append_history,
# whose transactions would otherwise spend longer building the query than committing it.
_INSERT = (
    "INSERT INTO sessions (id, agent_id, inference_session_id, created_at, reset_message, invalidated_at, "
    "processed_until) VALUES (?, ?, ?, ?, ?, NULL, NULL)"
)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session row (legacy `SessionDbRecord`)."""

    id: str
    agent_id: str
    inference_session_id: str | None
    created_at: int
    reset_message: str | None
    invalidated_at: int | None
    processed_until: int | None
    ended_at: int | None


def _session_parse(values: tuple[Any, ...]) -> SessionRecord:
    return SessionRecord(*values)


class SessionsRepository:
    """Session rows read and written directly; nothing is cached."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find_by_id(self, id: str) -> SessionRecord | None:
        """The session with this id, or None."""
        rows = await Session.filter(id=id).using_db(self._db.connection()).limit(1).values_list(*_FIELDS)
        return _session_parse(rows[0]) if rows else None

    async def find_by_agent_id(self, agent_id: str) -> list[SessionRecord]:
        """The sessions of an agent, oldest first."""
        rows = (
            await Session.filter(agent_id=agent_id)
            .using_db(self._db.connection())
            .order_by("created_at")
            .values_list(*_FIELDS)
        )
        return [_session_parse(row) for row in rows]

    async def create(
        self,
        agent_id: str,
        *,
        inference_session_id: str | None = None,
        created_at: int | None = None,
        reset_message: str | None = None,
        id: str | None = None,
    ) -> str:
        """Inserts a new session (a new cuid2 id unless `id` is given; both cursors NULL) and returns its id.

        An unknown agent raises the foreign key error.
        """
        session_id = cuid_create() if id is None else id
        await self._db.connection().execute_insert(
            _INSERT,
            [session_id, agent_id, inference_session_id, now_ms() if created_at is None else created_at, reset_message],
        )
        return session_id

    async def end_session(self, id: str, ended_at: int) -> None:
        """Sets ended_at unless it is already set: the first call wins."""
        await Session.filter(id=id, ended_at__isnull=True).using_db(self._db.connection()).update(ended_at=ended_at)

    async def invalidate(self, id: str, history_id: int) -> None:
        """Raises invalidated_at to history_id when it is NULL or smaller (a monotonic maximum)."""
        await (
            Session.filter(Q(id=id) & (Q(invalidated_at__isnull=True) | Q(invalidated_at__lt=history_id)))
            .using_db(self._db.connection())
            .update(invalidated_at=history_id)
        )

    async def find_invalidated(self, limit: int) -> list[SessionRecord]:
        """Up to `limit` sessions waiting for memory processing, lowest invalidated_at first."""
        if limit_check(limit) == 0:
            return []  # Tortoise drops a zero LIMIT; SQLite's LIMIT 0 returns nothing.
        rows = (
            await Session.filter(invalidated_at__isnull=False)
            .using_db(self._db.connection())
            .order_by("invalidated_at")
            .limit(limit)
            .values_list(*_FIELDS)
        )
        return [_session_parse(row) for row in rows]

    async def mark_processed(self, id: str, processed_until: int, expected_invalidated_at: int) -> bool:
        """Compare-and-set: clears invalidated_at and sets processed_until only if invalidated_at
        still equals the expected value; returns whether the row changed."""
        changed = (
            await Session.filter(id=id, invalidated_at=expected_invalidated_at)
            .using_db(self._db.connection())
            .update(invalidated_at=None, processed_until=processed_until)
        )
        return bool(changed == 1)
