"""InboxRepository: durable inbox items of agents (no cache); `data` is opaque text to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daycare.schema import InboxItem
from daycare.storage.db.statements import upsert_statement
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.record_checks import key_check, number_check, text_check

INBOX_FIELDS = ("id", "agent_id", "posted_at", "type", "data")
# One atomic upsert, as the legacy code wrote it (never REPLACE, which deletes first). It is
# every queued message's hot path, so it is built once.
_UPSERT = upsert_statement(InboxItem, INBOX_FIELDS)


@dataclass(frozen=True, slots=True)
class InboxRecord:
    """An inbox row (legacy `InboxDbRecord`); `data` is the stored text, unparsed."""

    id: str
    agent_id: str
    posted_at: int
    type: str
    data: str


class InboxRepository(Repository[InboxRecord]):
    """Inbox rows read and written directly; nothing is cached."""

    model = InboxItem
    fields = INBOX_FIELDS
    entity = "Inbox item"

    def record_read(self, row: Mapping[str, Any]) -> InboxRecord:
        return InboxRecord(*(row[field] for field in INBOX_FIELDS))

    async def insert(self, id: str, agent_id: str, posted_at: int, type: str, data: str) -> None:
        """Inserts the item, or overwrites every column of the item with this id.

        A blank or None id or agent id raises ValueError, a value of the wrong type TypeError; nothing is written.
        """
        if not isinstance(data, str):
            raise TypeError(f"inbox data is stored as given and must be text, got {data.__class__.__name__}")
        key_check(id, "Inbox item id")
        key_check(agent_id, "Inbox item agent_id")
        number_check(posted_at, "Inbox item posted_at")
        text_check(type, "Inbox item type")
        await _UPSERT.run(self._conn(), id=id, agent_id=agent_id, posted_at=posted_at, type=type, data=data)

    async def find_by_agent_id(self, agent_id: str) -> list[InboxRecord]:
        """The items of an agent by posted_at, then id."""
        return await self._read(self._query(agent_id=agent_id).order_by("posted_at", "id"))

    async def delete(self, id: str) -> None:
        """Deletes one item; a missing id is a no-op."""
        await self._query(id=id).delete()

    async def delete_by_agent_id(self, agent_id: str) -> None:
        """Deletes every item of an agent."""
        await self._query(agent_id=agent_id).delete()
