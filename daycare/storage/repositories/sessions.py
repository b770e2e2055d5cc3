"""SessionsRepository: the conversations of agents and their memory cursors (no cache).

`invalidated_at` and `processed_until` hold `session_history.id` values, not times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pypika_tortoise.queries import Query, QueryBuilder
from tortoise.expressions import Q

from daycare.schema import Session
from daycare.storage.clock import now_ms
from daycare.storage.db.statements import IsNotNull, ModelTable, Statement, slot
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.limits import limit_check
from daycare.storage.repositories.record_checks import key_check, number_check, text_check

SESSION_FIELDS = (
    "id",
    "agent_id",
    "inference_session_id",
    "created_at",
    "reset_message",
    "invalidated_at",
    "processed_until",
    "ended_at",
)
_INSERTED = ("id", "agent_id", "inference_session_id", "created_at", "reset_message")


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


def _insert(query: type[Query]) -> QueryBuilder:
    sessions = ModelTable(Session)
    return query.into(sessions.table).columns(*sessions.columns(_INSERTED)).insert(*map(slot, _INSERTED))


def _invalidated(query: type[Query]) -> QueryBuilder:
    # IS NOT NULL, so that SQLite walks only the invalidated sessions of idx_sessions_invalidated_at.
    sessions = ModelTable(Session)
    return (
        query.from_(sessions.table)
        .select(*sessions.columns(SESSION_FIELDS))
        .where(IsNotNull(sessions["invalidated_at"]))
        .orderby(sessions["invalidated_at"])
        .limit(slot("limit"))
    )


# The insert runs inside create_agent_with_session and append_history, whose transactions would
# otherwise spend longer building the query than committing it.
_INSERT = Statement(_insert)
_INVALIDATED = Statement(_invalidated)


class SessionsRepository(Repository[SessionRecord]):
    """Session rows read and written directly; nothing is cached."""

    model = Session
    fields = SESSION_FIELDS
    entity = "Session"

    def record_read(self, row: Mapping[str, Any]) -> SessionRecord:
        return SessionRecord(*(row[field] for field in SESSION_FIELDS))

    async def find_by_id(self, id: str) -> SessionRecord | None:
        """The session with this id, or None."""
        return await self._read_first(self._query(id=id))

    async def find_by_agent_id(self, agent_id: str) -> list[SessionRecord]:
        """The sessions of an agent, oldest first."""
        return await self._read(self._query(agent_id=agent_id).order_by("created_at"))

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

        An unknown agent raises the foreign key error; a blank id or agent id raises ValueError, a value
        of the wrong type TypeError, and nothing is written.
        """
        session_id = cuid_create() if id is None else id
        created = now_ms() if created_at is None else created_at
        key_check(session_id, "Session id")
        key_check(agent_id, "Session agent_id")
        number_check(created, "Session created_at")
        text_check(inference_session_id, "Session inference_session_id", nullable=True)
        text_check(reset_message, "Session reset_message", nullable=True)
        await _INSERT.run(
            self._conn(),
            id=session_id,
            agent_id=agent_id,
            inference_session_id=inference_session_id,
            created_at=created,
            reset_message=reset_message,
        )
        return session_id

    async def end_session(self, id: str, ended_at: int) -> None:
        """Sets ended_at unless it is already set: the first call wins."""
        number_check(ended_at, "Session ended_at")
        await self._query(id=id, ended_at__isnull=True).update(ended_at=ended_at)

    async def invalidate(self, id: str, history_id: int) -> None:
        """Raises invalidated_at to history_id when it is NULL or smaller (a monotonic maximum)."""
        number_check(history_id, "Session invalidated_at")
        await self._query(Q(id=id) & (Q(invalidated_at__isnull=True) | Q(invalidated_at__lt=history_id))).update(
            invalidated_at=history_id
        )

    async def find_invalidated(self, limit: int) -> list[SessionRecord]:
        """Up to `limit` sessions waiting for memory processing, lowest invalidated_at first."""
        rows = await _INVALIDATED.rows(self._conn(), limit=limit_check(limit))
        return self._records(rows)

    async def mark_processed(self, id: str, processed_until: int, expected_invalidated_at: int) -> bool:
        """Compare-and-set: clears invalidated_at and sets processed_until only if invalidated_at
        still equals the expected value; returns whether the row changed."""
        number_check(processed_until, "Session processed_until")
        changed = await self._query(id=id, invalidated_at=expected_invalidated_at).update(
            invalidated_at=None, processed_until=processed_until
        )
        return bool(changed == 1)
