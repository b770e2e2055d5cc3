"""InboxRepository: durable inbox items of agents (no cache); `data` is opaque text to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daycare.schema import InboxItem
from daycare.storage.db.database import Database

_FIELDS = ("id", "agent_id", "posted_at", "type", "data")
# One atomic upsert, as the legacy code wrote it (never REPLACE, which deletes first). It is
# also every queued message's hot path, so it stays a fixed, parameterised statement.
_UPSERT = (
    "INSERT INTO inbox (id, agent_id, posted_at, type, data) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET agent_id = excluded.agent_id, posted_at = excluded.posted_at, "
    "type = excluded.type, data = excluded.data"
)


@dataclass(frozen=True, slots=True)
class InboxRecord:
    """An inbox row (legacy `InboxDbRecord`); `data` is the stored text, unparsed."""

    id: str
    agent_id: str
    posted_at: int
    type: str
    data: str


def _inbox_parse(values: tuple[Any, ...]) -> InboxRecord:
    return InboxRecord(*values)


class InboxRepository:
    """Inbox rows read and written directly; nothing is cached."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, id: str, agent_id: str, posted_at: int, type: str, data: str) -> None:
        """Inserts the item, or overwrites every column of the item with this id."""
        if not isinstance(data, str):
            raise TypeError(f"inbox data is stored as given and must be text, got {data.__class__.__name__}")
        await self._db.connection().execute_query(_UPSERT, [id, agent_id, posted_at, type, data])

    async def find_by_agent_id(self, agent_id: str) -> list[InboxRecord]:
        """The items of an agent by posted_at, then id."""
        rows = (
            await InboxItem.filter(agent_id=agent_id)
            .using_db(self._db.connection())
            .order_by("posted_at", "id")
            .values_list(*_FIELDS)
        )
        return [_inbox_parse(row) for row in rows]

    async def delete(self, id: str) -> None:
        """Deletes one item; a missing id is a no-op."""
        await InboxItem.filter(id=id).using_db(self._db.connection()).delete()

    async def delete_by_agent_id(self, agent_id: str) -> None:
        """Deletes every item of an agent."""
        await InboxItem.filter(agent_id=agent_id).using_db(self._db.connection()).delete()
