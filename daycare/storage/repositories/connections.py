"""ConnectionsRepository: friend requests between two users (legacy §2.14, no cache).

A pair is stored once, sorted: user_a_id < user_b_id (the table's CHECK). Each side has a
"requested" flag and the time of its last request; clearing a side keeps that time, which the
request cooldown reads. Friends are pairs where both sides requested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q

from daycare.schema import Connection
from daycare.storage.clock import now_ms
from daycare.storage.db.database import Database


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """The state of a sorted user pair."""

    user_a_id: str
    user_b_id: str
    requested_a: bool
    requested_b: bool
    requested_a_at: int | None
    requested_b_at: int | None


def connection_pair(first_id: str, second_id: str) -> tuple[str, str]:
    """Both ids trimmed and sorted (code-point order, as SQLite compares them for the CHECK)."""
    first, second = first_id.strip(), second_id.strip()
    if not first or not second:
        raise ValueError("Connection user ids are required.")
    if first == second:
        raise ValueError("Connection user ids must be different.")
    return (first, second) if first < second else (second, first)


# One statement per side: a new row starts with the other side unrequested; an existing row
# only gets this side's flag and time. RETURNING reads the row in the same statement.
_REQUEST_A = (
    "INSERT INTO connections (user_a_id, user_b_id, requested_a, requested_b, requested_a_at, requested_b_at) "
    "VALUES (?, ?, 1, 0, ?, NULL) "
    "ON CONFLICT(user_a_id, user_b_id) DO UPDATE SET requested_a = 1, requested_a_at = excluded.requested_a_at "
    "RETURNING *"
)
_REQUEST_B = (
    "INSERT INTO connections (user_a_id, user_b_id, requested_a, requested_b, requested_a_at, requested_b_at) "
    "VALUES (?, ?, 0, 1, NULL, ?) "
    "ON CONFLICT(user_a_id, user_b_id) DO UPDATE SET requested_b = 1, requested_b_at = excluded.requested_b_at "
    "RETURNING *"
)
_CLEAR_A = "UPDATE connections SET requested_a = 0 WHERE user_a_id = ? AND user_b_id = ? RETURNING *"
_CLEAR_B = "UPDATE connections SET requested_b = 0 WHERE user_a_id = ? AND user_b_id = ? RETURNING *"
_FOR_SUBUSERS = (
    "SELECT DISTINCT c.* FROM connections c "
    "INNER JOIN users su ON (c.user_a_id = su.id OR c.user_b_id = su.id) "
    "WHERE su.parent_user_id = ? ORDER BY c.user_a_id ASC, c.user_b_id ASC"
)
_WITH_SUBUSERS = (
    "SELECT c.* FROM connections c "
    "INNER JOIN users su ON ((c.user_a_id = su.id AND c.user_b_id = ?) OR (c.user_b_id = su.id AND c.user_a_id = ?)) "
    "WHERE su.parent_user_id = ? ORDER BY c.user_a_id ASC, c.user_b_id ASC"
)


def _record_read(row: dict[str, Any]) -> ConnectionRecord:
    return ConnectionRecord(**{**row, "requested_a": row["requested_a"] == 1, "requested_b": row["requested_b"] == 1})


class ConnectionsRepository:
    """Friend-request state per user pair; both users must exist (foreign keys, ON DELETE CASCADE)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert_request(
        self, requester_id: str, target_id: str, requested_at: int | None = None
    ) -> ConnectionRecord:
        """Marks the requester's side as requested at `requested_at` (default now) and returns the pair."""
        user_a_id, user_b_id = connection_pair(requester_id, target_id)
        statement = _REQUEST_A if requester_id.strip() == user_a_id else _REQUEST_B
        at = now_ms() if requested_at is None else requested_at
        rows = await self._db.connection().execute_query_dict(statement, [user_a_id, user_b_id, at])
        if not rows:
            raise RuntimeError("Failed to upsert connection request.")
        return _record_read(rows[0])

    async def clear_side(self, user_id: str, other_id: str) -> ConnectionRecord | None:
        """Withdraws `user_id`'s request (its time is kept); None if the pair has no row."""
        user_a_id, user_b_id = connection_pair(user_id, other_id)
        statement = _CLEAR_A if user_id.strip() == user_a_id else _CLEAR_B
        rows = await self._db.connection().execute_query_dict(statement, [user_a_id, user_b_id])
        return _record_read(rows[0]) if rows else None

    async def find(self, first_id: str, second_id: str) -> ConnectionRecord | None:
        """The pair's row, whichever order the ids come in."""
        user_a_id, user_b_id = connection_pair(first_id, second_id)
        row = (
            await Connection.filter(**Connection.key_filter(user_a_id=user_a_id, user_b_id=user_b_id))
            .using_db(self._db.connection())
            .first()
            .values()
        )
        return _record_read(row) if row else None

    async def find_friends(self, user_id: str) -> list[ConnectionRecord]:
        """The user's pairs where both sides requested, by (a, b)."""
        rows = (
            await Connection.filter(Q(user_a_id=user_id) | Q(user_b_id=user_id), requested_a=True, requested_b=True)
            .using_db(self._db.connection())
            .order_by("user_a_id", "user_b_id")
            .values()
        )
        return [_record_read(row) for row in rows]

    async def find_connections_for_subusers_of(self, owner_user_id: str) -> list[ConnectionRecord]:
        """Every pair with a sub-user of `owner_user_id` on either side, by (a, b)."""
        rows = await self._db.connection().execute_query_dict(_FOR_SUBUSERS, [owner_user_id])
        return [_record_read(row) for row in rows]

    async def find_connections_with_subusers_of(
        self, friend_user_id: str, owner_user_id: str
    ) -> list[ConnectionRecord]:
        """The pairs between `friend_user_id` and any sub-user of `owner_user_id`, by (a, b)."""
        rows = await self._db.connection().execute_query_dict(
            _WITH_SUBUSERS, [friend_user_id, friend_user_id, owner_user_id]
        )
        return [_record_read(row) for row in rows]

    async def delete(self, first_id: str, second_id: str) -> bool:
        user_a_id, user_b_id = connection_pair(first_id, second_id)
        removed: int = (
            await Connection.filter(**Connection.key_filter(user_a_id=user_a_id, user_b_id=user_b_id))
            .using_db(self._db.connection())
            .delete()
        )
        return removed > 0
