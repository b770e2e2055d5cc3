"""ChannelMessagesRepository: messages posted to channels (no cache)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daycare.schema import ChannelMessage
from daycare.storage.db.statements import upsert_statement
from daycare.storage.json_values import frozen, json_encode
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.lenient_json import string_list_decode
from daycare.storage.repositories.limits import limit_clamp

MESSAGE_FIELDS = ("id", "channel_id", "user_id", "sender_username", "text", "mentions", "created_at")
# Every message sent is one upsert (never REPLACE, which deletes first): built once.
_UPSERT = upsert_statement(ChannelMessage, MESSAGE_FIELDS)


@dataclass(frozen=True, slots=True)
class ChannelMessageRecord:
    """A message in a channel; user_id is the channel owner, mentions are usernames."""

    id: str
    channel_id: str
    user_id: str
    sender_username: str
    text: str
    mentions: Sequence[str]
    created_at: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "mentions", frozen(self.mentions))


class ChannelMessagesRepository(Repository[ChannelMessageRecord]):
    """Channel messages, read newest-first and returned oldest-first; nothing is cached."""

    model = ChannelMessage
    fields = MESSAGE_FIELDS
    entity = "Channel message"

    def record_read(self, row: Mapping[str, Any]) -> ChannelMessageRecord:
        return ChannelMessageRecord(
            id=row["id"],
            channel_id=row["channel_id"],
            user_id=row["user_id"],
            sender_username=row["sender_username"],
            text=row["text"],
            mentions=string_list_decode(row["mentions"]),
            created_at=row["created_at"],
        )

    async def create(self, record: ChannelMessageRecord) -> None:
        """Inserts or overwrites the message; its channel must exist (foreign key). A blank id or a value
        of the wrong type raises ValueError or TypeError and writes nothing."""
        self._write_check(record)
        row = {field: getattr(record, field) for field in MESSAGE_FIELDS}
        row["mentions"] = json_encode(record.mentions, "Channel message mentions")
        await _UPSERT.run(self._conn(), **row)

    async def find_recent(self, ctx: Context, channel_id: str, limit: float = 50) -> list[ChannelMessageRecord]:
        """The channel's latest `limit` messages (1..500) of the user, oldest first."""
        query = self._query(user_id=ctx.user_id, channel_id=channel_id).order_by("-created_at", "-id")
        records = await self._read(query.limit(limit_clamp(limit, 1, 500)))
        return records[::-1]
