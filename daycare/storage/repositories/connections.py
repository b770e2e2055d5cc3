"""ConnectionsRepository: friend requests between two users (no cache).

A pair is stored once, sorted: user_a_id < user_b_id (the table's CHECK). Each side has a
"requested" flag and the time of its last request; clearing a side keeps that time, which the
request cooldown reads. Friends are pairs where both sides requested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from pypika_tortoise.queries import Query, QueryBuilder, Table
from tortoise.expressions import Q, Subquery

from daycare.schema import Connection, User
from daycare.storage.clock import now_ms
from daycare.storage.db.statements import ModelTable, Statement, returning, slot
from daycare.storage.repositories.base import Repository
from daycare.storage.repositories.record_checks import number_check

CONNECTION_FIELDS = ("user_a_id", "user_b_id", "requested_a", "requested_b", "requested_a_at", "requested_b_at")
_ORDER = ("user_a_id", "user_b_id")


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
    """Both ids trimmed and sorted (code-point order, as SQLite compares them for the CHECK).

    Raises ValueError for a blank or None id, TypeError for an id that is not a string.
    """
    for user_id in (first_id, second_id):
        if user_id is not None and not isinstance(user_id, str):
            raise TypeError(f"Connection user ids must be strings, got {type(user_id).__name__} {user_id!r}")
    first, second = (first_id or "").strip(), (second_id or "").strip()
    if not first or not second:
        raise ValueError("Connection user ids are required.")
    if first == second:
        raise ValueError("Connection user ids must be different.")
    return (first, second) if first < second else (second, first)


def _request(query: type[Query], side: str) -> QueryBuilder:
    """Marks one side requested at `requested_at`: a new row starts with the other side unrequested,
    an existing row only gets this side's flag and time. RETURNING reads the row in the same statement."""
    connections = ModelTable(Connection)
    other = "b" if side == "a" else "a"
    values: dict[str, Any] = {
        "user_a_id": slot("user_a_id"),
        "user_b_id": slot("user_b_id"),
        f"requested_{side}": True,
        f"requested_{other}": False,
        f"requested_{side}_at": slot("requested_at"),
        f"requested_{other}_at": None,
    }
    at_column = connections.column_name(f"requested_{side}_at")
    upsert = (
        query.into(connections.table)
        .columns(*connections.columns(values))
        .insert(*values.values())
        .on_conflict(*(connections.column_name(field) for field in _ORDER))
        .do_update(connections.column_name(f"requested_{side}"), True)
        .do_update(at_column, Table("excluded")[at_column])
    )
    return returning(upsert, *connections.columns(CONNECTION_FIELDS))


def _clear(query: type[Query], side: str) -> QueryBuilder:
    """Withdraws one side's request of an existing pair, keeping its time; RETURNING reads the row."""
    connections = ModelTable(Connection)
    update = (
        query.update(connections.table)
        .set(connections[f"requested_{side}"], False)
        .where((connections["user_a_id"] == slot("user_a_id")) & (connections["user_b_id"] == slot("user_b_id")))
    )
    return returning(update, *connections.columns(CONNECTION_FIELDS))


# Each is one statement, so a request racing another on the same pair never loses a side.
_REQUEST = {side: Statement(partial(_request, side=side)) for side in ("a", "b")}
_CLEAR = {side: Statement(partial(_clear, side=side)) for side in ("a", "b")}


class ConnectionsRepository(Repository[ConnectionRecord]):
    """Friend-request state per user pair; both users must exist (foreign keys, ON DELETE CASCADE)."""

    model = Connection
    fields = CONNECTION_FIELDS
    entity = "Connection"
    key_fields = _ORDER

    def record_read(self, row: Mapping[str, Any]) -> ConnectionRecord:
        return ConnectionRecord(
            user_a_id=row["user_a_id"],
            user_b_id=row["user_b_id"],
            requested_a=row["requested_a"] == 1,
            requested_b=row["requested_b"] == 1,
            requested_a_at=row["requested_a_at"],
            requested_b_at=row["requested_b_at"],
        )

    async def upsert_request(
        self, requester_id: str, target_id: str, requested_at: int | None = None
    ) -> ConnectionRecord:
        """Marks the requester's side as requested at `requested_at` (default now) and returns the pair."""
        user_a_id, user_b_id = connection_pair(requester_id, target_id)
        side = "a" if requester_id.strip() == user_a_id else "b"
        at = now_ms() if requested_at is None else requested_at
        number_check(at, "Connection requested_at")
        rows = await _REQUEST[side].rows(self._conn(), user_a_id=user_a_id, user_b_id=user_b_id, requested_at=at)
        record = self._record(rows[0]) if rows else None
        if record is None:
            raise RuntimeError("Failed to upsert connection request.")
        return record

    async def clear_side(self, user_id: str, other_id: str) -> ConnectionRecord | None:
        """Withdraws `user_id`'s request (its time is kept); None if the pair has no row."""
        user_a_id, user_b_id = connection_pair(user_id, other_id)
        side = "a" if user_id.strip() == user_a_id else "b"
        rows = await _CLEAR[side].rows(self._conn(), user_a_id=user_a_id, user_b_id=user_b_id)
        return self._record(rows[0]) if rows else None

    async def find(self, first_id: str, second_id: str) -> ConnectionRecord | None:
        """The pair's row, whichever order the ids come in."""
        user_a_id, user_b_id = connection_pair(first_id, second_id)
        return await self._read_first(self._query(**Connection.key_filter(user_a_id=user_a_id, user_b_id=user_b_id)))

    async def find_friends(self, user_id: str) -> list[ConnectionRecord]:
        """The user's pairs where both sides requested, by (a, b)."""
        query = self._query(Q(user_a_id=user_id) | Q(user_b_id=user_id), requested_a=True, requested_b=True)
        return await self._read(query.order_by(*_ORDER))

    async def find_connections_for_subusers_of(self, owner_user_id: str) -> list[ConnectionRecord]:
        """Every pair with a sub-user of `owner_user_id` on either side, by (a, b)."""
        sub_users = self._sub_users(owner_user_id)
        query = self._query(Q(user_a_id__in=sub_users) | Q(user_b_id__in=sub_users))
        return await self._read(query.order_by(*_ORDER))

    async def find_connections_with_subusers_of(
        self, friend_user_id: str, owner_user_id: str
    ) -> list[ConnectionRecord]:
        """The pairs between `friend_user_id` and any sub-user of `owner_user_id`, by (a, b)."""
        sub_users = self._sub_users(owner_user_id)
        query = self._query(
            Q(user_a_id=friend_user_id, user_b_id__in=sub_users) | Q(user_b_id=friend_user_id, user_a_id__in=sub_users)
        )
        return await self._read(query.order_by(*_ORDER))

    async def delete(self, first_id: str, second_id: str) -> bool:
        """Deletes the pair's row; whether there was one."""
        user_a_id, user_b_id = connection_pair(first_id, second_id)
        removed = await self._query(**Connection.key_filter(user_a_id=user_a_id, user_b_id=user_b_id)).delete()
        return bool(removed)

    def _sub_users(self, owner_user_id: str) -> Subquery:
        """The ids of the owner's sub-users, as a subquery of the statement that uses it."""
        return Subquery(User.filter(parent_user_id=owner_user_id).using_db(self._conn()).values("id"))
