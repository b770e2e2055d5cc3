"""ChannelMessagesRepository: messages posted to channels (legacy §2.13, no cache)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daycare.schema import ChannelMessage
from daycare.storage.db.database import Database
from daycare.storage.json_values import frozen, json_encode
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.lenient_json import string_list_decode
from daycare.storage.repositories.limits import limit_clamp
from daycare.storage.repositories.statements import column_values, upsert_statement

_COLUMNS = ("id", "channel_id", "user_id", "sender_username", "text", "mentions", "created_at")
_UPSERT = upsert_statement("channel_messages", _COLUMNS)


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


def _record_read(row: dict[str, Any]) -> ChannelMessageRecord:
    return ChannelMessageRecord(**{**row, "mentions": string_list_decode(row["mentions"])})


class ChannelMessagesRepository:
    """Channel messages, read newest-first and returned oldest-first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, record: ChannelMessageRecord) -> None:
        """Inserts or overwrites the message; its channel must exist (foreign key)."""
        values = column_values(record, _COLUMNS)
        values[5] = json_encode(record.mentions)
        await self._db.connection().execute_query(_UPSERT, values)

    async def find_recent(self, ctx: Context, channel_id: str, limit: float = 50) -> list[ChannelMessageRecord]:
        """The channel's latest `limit` messages (1..500) of the user, oldest first."""
        rows = (
            await ChannelMessage.filter(user_id=ctx.user_id, channel_id=channel_id)
            .using_db(self._db.connection())
            .order_by("-created_at", "-id")
            .limit(limit_clamp(limit, 1, 500))
            .values()
        )
        return [_record_read(row) for row in reversed(rows)]
