"""UsersRepository: users and their connector keys, behind a write-through cache.

`create` writes the user and its connector key in one transaction, so a lost race for a
connector key leaves no user row behind (the legacy code committed the user first). Reads
are indexed queries: by id, by connector key, by nametag, the owner and a parent's sub-users;
only `find_all` loads every user.

Connector keys and nametags are Unicode text that users type: the NFC and NFD spellings of
one key are one key. They are stored in NFC and looked up in NFC; a lookup also finds a key
an older version stored in NFD.
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from pypika_tortoise.queries import Query, QueryBuilder
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.queryset import QuerySet

from daycare.schema import User, UserConnectorKey
from daycare.storage.clock import now_ms
from daycare.storage.db.database import Database
from daycare.storage.db.dialect import transaction_lock, unique_violation_targets
from daycare.storage.db.statements import ModelTable, Statement, returning, slot
from daycare.storage.identifiers import cuid_create, nametag_generate
from daycare.storage.repositories.base import CachedRepository
from daycare.storage.repositories.record_checks import (
    ROW_ERRORS,
    SkippedRows,
    UnreadableRow,
    key_check,
    number_check,
    record_check,
    records_read,
    text_check,
)

NAMETAG_ATTEMPTS = 100
NAMETAG_TAKEN = "users.nametag"
CONNECTOR_KEY_TAKEN = "user_connector_keys.connector_key"

USER_FIELDS = ("id", "is_owner", "parent_user_id", "name", "nametag", "created_at", "updated_at")
KEY_FIELDS = ("id", "user_id", "connector_key")


@dataclass(frozen=True, slots=True)
class ConnectorKeyRecord:
    """One `connector:user` key of a user; ids grow with insertion order."""

    id: int
    user_id: str
    connector_key: str


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user with its connector keys in key-id order (legacy `UserWithConnectorKeys`)."""

    id: str
    is_owner: bool
    parent_user_id: str | None
    name: str | None
    nametag: str
    created_at: int
    updated_at: int
    connector_keys: tuple[ConnectorKeyRecord, ...] = ()

    def __post_init__(self) -> None:
        # A tuple, so a caller cannot append to the keys of a cached record.
        if not isinstance(self.connector_keys, tuple):
            object.__setattr__(self, "connector_keys", tuple(self.connector_keys))


class UserFields(TypedDict, total=False):
    """The optional fields of a new user other than its nametag (see `UsersRepository.create`)."""

    id: str | None
    is_owner: bool
    parent_user_id: str | None
    name: str | None
    created_at: int | None
    updated_at: int | None
    connector_key: str | None


def key_normalize(text: str) -> str:
    """A typed key (connector key, nametag) in NFC: one spelling for the NFC and NFD forms of one text."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def _spellings(text: str) -> list[str]:
    """The NFC form of a key first, then the NFD form an older version may have stored, if it differs."""
    nfc = key_normalize(text)
    nfd = nfc if nfc.isascii() else unicodedata.normalize("NFD", nfc)
    return [nfc] if nfd == nfc else [nfc, nfd]


def connector_key_create(connector: str, user_id: str) -> str:
    """Builds `connector:userId` from trimmed parts, in NFC; raises ValueError when a part is empty or None."""
    connector = (connector or "").strip()
    user_id = (user_id or "").strip()
    if not connector:
        raise ValueError("Connector is required")
    if not user_id:
        raise ValueError("Connector userId is required")
    return key_normalize(f"{connector}:{user_id}")


def constraint_failed_on(error: BaseException, target: str) -> bool:
    """Whether a database error is a UNIQUE violation on `target` (`table.column`), on either dialect."""
    return isinstance(error, IntegrityError) and target in unique_violation_targets(error)


# The statements of connector-key resolution, its busiest path, are built once.


def _user_select(query: type[Query]) -> QueryBuilder:
    users = ModelTable(User)
    return query.from_(users.table).select(*users.columns(USER_FIELDS))


def _user_by_id(query: type[Query]) -> QueryBuilder:
    return _user_select(query).where(ModelTable(User)["id"] == slot("id")).limit(1)


def _owner(query: type[Query]) -> QueryBuilder:
    return _user_select(query).where(ModelTable(User)["is_owner"] == slot("is_owner")).limit(1)


def _keys_by_user(query: type[Query]) -> QueryBuilder:
    keys = ModelTable(UserConnectorKey)
    return (
        query.from_(keys.table)
        .select(*keys.columns(KEY_FIELDS))
        .where(keys["user_id"] == slot("user_id"))
        .orderby(keys["id"])
    )


def _user_id_by_key(query: type[Query]) -> QueryBuilder:
    keys = ModelTable(UserConnectorKey)
    return (
        query.from_(keys.table).select(keys["user_id"]).where(keys["connector_key"] == slot("connector_key")).limit(1)
    )


def _user_ids_by_spellings(query: type[Query]) -> QueryBuilder:
    keys = ModelTable(UserConnectorKey)
    return (
        query.from_(keys.table)
        .select(keys["user_id"], keys["connector_key"])
        .where(keys["connector_key"].isin([slot("nfc"), slot("nfd")]))
    )


def _any_user(query: type[Query]) -> QueryBuilder:
    users = ModelTable(User)
    return query.from_(users.table).select(users["id"]).limit(1)


def _user_insert(query: type[Query]) -> QueryBuilder:
    users = ModelTable(User)
    return query.into(users.table).columns(*users.columns(USER_FIELDS)).insert(*map(slot, USER_FIELDS))


def _key_insert(query: type[Query]) -> QueryBuilder:
    keys = ModelTable(UserConnectorKey)
    insert = query.into(keys.table).columns(keys["user_id"], keys["connector_key"])
    return returning(insert.insert(slot("user_id"), slot("connector_key")), keys["id"])


_USER_BY_ID = Statement(_user_by_id)
_OWNER = Statement(_owner)
_KEYS_BY_USER = Statement(_keys_by_user)
_USER_ID_BY_KEY = Statement(_user_id_by_key)
_USER_IDS_BY_SPELLINGS = Statement(_user_ids_by_spellings)
_ANY_USER = Statement(_any_user)
_USER_INSERT = Statement(_user_insert)
_KEY_INSERT = Statement(_key_insert)


def _key_read(row: Mapping[str, Any]) -> ConnectorKeyRecord:
    key = ConnectorKeyRecord(row["id"], row["user_id"], row["connector_key"])
    record_check(key, "User connector key")
    return key


def _users_sort(records: Iterable[UserRecord]) -> list[UserRecord]:
    # Legacy sorted ids with JS localeCompare; cuid2 ids are lowercase alphanumerics, where it equals code order.
    return sorted(records, key=lambda record: (record.created_at, record.id))


class OwnerExists(RuntimeError):
    """An owner was to be created on a shared database, and another engine has created one."""


class UsersRepository(CachedRepository[str, UserRecord]):
    """Users by id, connector key and nametag, cached per instance; returned records are frozen."""

    model = User
    fields = USER_FIELDS
    entity = "User"

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        # Secondary lookups into the cache; a stale entry is harmless: the id is checked on use.
        self._id_by_connector_key: dict[str, str] = {}
        self._id_by_nametag: dict[str, str] = {}
        self._keys_skipped = SkippedRows(UserConnectorKey._meta.db_table, ("id",))

    def record_read(self, row: Mapping[str, Any], keys: Sequence[ConnectorKeyRecord] = ()) -> UserRecord:
        return UserRecord(
            id=row["id"],
            is_owner=bool(row["is_owner"]),
            parent_user_id=row["parent_user_id"],
            name=row["name"],
            nametag=row["nametag"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            connector_keys=tuple(keys),
        )

    async def find_by_id(self, id: str) -> UserRecord | None:
        """The user with this id; once all users are loaded a cache miss is final (no query)."""
        cached = self._cache.get(id)
        if cached is not None or self._cache.all_loaded:
            return cached
        with self._cache.loading() as load:
            loaded = await self._row_load(id)
            if loaded is not None:
                load.store([(id, loaded)])
                self._lookups_add(loaded)
        return loaded

    async def find_by_connector_key(self, connector_key: str) -> UserRecord | None:
        """The user owning this key (untrimmed; NFC and NFD spellings are one key); always asks the
        database on a cache miss."""
        spellings = _spellings(connector_key)
        connector_key = spellings[0]
        cached_id = self._id_by_connector_key.get(connector_key)
        if cached_id:
            user = await self.find_by_id(cached_id)
            if user is not None and any(key.connector_key in spellings for key in user.connector_keys):
                return user
            self._id_by_connector_key.pop(connector_key, None)
        if len(spellings) == 1:
            rows = await _USER_ID_BY_KEY.rows(self._conn(), connector_key=connector_key)
        else:  # the NFC row first: an older version may have stored the NFD spelling too
            found = await _USER_IDS_BY_SPELLINGS.rows(self._conn(), nfc=spellings[0], nfd=spellings[1])
            rows = sorted(found, key=lambda row: row["connector_key"] != connector_key)
        user_id = rows[0]["user_id"] if rows else None
        user_id = user_id.strip() if isinstance(user_id, str) else ""
        return await self.find_by_id(user_id) if user_id else None

    async def find_by_nametag(self, nametag: str) -> UserRecord | None:
        """The user with this nametag (trimmed; NFC and NFD spellings are one tag); an empty tag finds nobody."""
        nametag = nametag.strip() if isinstance(nametag, str) else ""
        if not nametag:
            return None
        spellings = _spellings(nametag)
        nametag = spellings[0]
        cached_id = self._id_by_nametag.get(nametag)
        if cached_id:
            user = await self.find_by_id(cached_id)
            if user is not None and user.nametag in spellings:
                return user
            self._id_by_nametag.pop(nametag, None)
        if self._cache.all_loaded:
            return None
        found = await self._query(nametag__in=spellings).values("id", "nametag")
        found.sort(key=lambda row: row["nametag"] != nametag)
        user_id = found[0]["id"] if found else None
        return await self.find_by_id(user_id.strip()) if isinstance(user_id, str) and user_id.strip() else None

    async def find_all(self) -> list[UserRecord]:
        """Every user by created_at, then id; the first call loads them all and rebuilds the cache."""
        if self._cache.all_loaded:
            return _users_sort(self._cache.records.values())
        with self._cache.loading() as load:
            records = await self._read_with_keys(self._query(), every_user=True)
            load.store(((record.id, record) for record in records), complete=True)
        self._id_by_connector_key.clear()
        self._id_by_nametag.clear()
        for record in records:
            self._lookups_add(record)
        return _users_sort(records)

    async def find_owner(self) -> UserRecord | None:
        """The owner (on a cache miss, one indexed query for its row, one for its keys); None for an unreadable row."""
        for record in self._cache.records.values():
            if record.is_owner:
                return record
        if self._cache.all_loaded:
            return None
        with self._cache.loading() as load:
            conn = self._conn()
            rows = await _OWNER.rows(conn, is_owner=True)
            if not rows:
                return None
            loaded = await self._user_with_keys(conn, rows[0])
            if loaded is not None:
                load.store([(loaded.id, loaded)])
                self._lookups_add(loaded)
        return loaded

    async def owner_row_exists(self) -> bool:
        """Whether the table holds an owner row at all, readable or not (one indexed query)."""
        return await self._query(is_owner=True).exists()

    async def find_by_parent_user_id(self, parent_user_id: str) -> list[UserRecord]:
        """The sub-users of a user by created_at, then id (one indexed query, plus their keys)."""
        if self._cache.all_loaded:
            return _users_sort(u for u in self._cache.records.values() if u.parent_user_id == parent_user_id)
        with self._cache.loading() as load:
            records = await self._read_with_keys(self._query(parent_user_id=parent_user_id))
            load.store((record.id, record) for record in records)
        return _users_sort(records)

    async def is_empty(self) -> bool:
        """Whether no user exists, without loading the users (one indexed query at most)."""
        if self._cache.records:
            return False
        if self._cache.all_loaded:
            return True
        return not await _ANY_USER.rows(self._conn())

    async def create(
        self,
        *,
        id: str | None = None,
        is_owner: bool = False,
        parent_user_id: str | None = None,
        name: str | None = None,
        nametag: str | None = None,
        created_at: int | None = None,
        updated_at: int | None = None,
        connector_key: str | None = None,
    ) -> UserRecord:
        """Inserts a user and its connector key (trimmed, in NFC; empty: none) in one transaction; a given
        nametag (in NFC) is tried once, else up to 100 generated ones. Database errors propagate and leave
        no row; ValueError or TypeError, for a blank id or a value of the wrong type, write nothing."""
        if id is not None:
            key_check(id, "User id")
        for what, text in (("connector_key", connector_key), ("nametag", nametag)):
            text_check(text, f"User {what}", nullable=True)
        created = now_ms() if created_at is None else created_at
        record = UserRecord(
            id=cuid_create() if id is None else id,
            is_owner=bool(is_owner),
            parent_user_id=parent_user_id,
            name=name,
            nametag="-",  # replaced by each attempt's nametag
            created_at=created,
            updated_at=created if updated_at is None else updated_at,
        )
        self._write_check(record)
        key = key_normalize((connector_key or "").strip())
        explicit = key_normalize((nametag or "").strip())
        async with self._writing(record.id):
            for _ in range(1 if explicit else NAMETAG_ATTEMPTS):
                attempt = replace(record, nametag=explicit or nametag_generate())
                try:
                    stored = await self._insert(attempt, key)
                except IntegrityError as error:
                    if explicit or not constraint_failed_on(error, NAMETAG_TAKEN):
                        raise
                    continue
                self._cache.put(stored.id, stored)
                self._lookups_add(stored)
                return stored
        raise RuntimeError(f"Failed to generate unique nametag after {NAMETAG_ATTEMPTS} attempts.")

    async def update(
        self,
        id: str,
        *,
        is_owner: bool | None = None,
        created_at: int | None = None,
        updated_at: int | None = None,
    ) -> None:
        """Changes is_owner, created_at and updated_at (the only updatable fields); LookupError if missing."""
        number_check(created_at, "User created_at", nullable=True)
        number_check(updated_at, "User updated_at", nullable=True)
        shared = self._db.shared
        async with self._writing(id):
            # Several engines: the row is read locked, in the transaction that writes it (see CachedRepository._update).
            async with self._db.in_transaction() if shared else contextlib.nullcontext():
                current = None if shared else self._cache.get(id)
                current = current or await self._row_load(id, lock=shared)
                if current is None:
                    raise LookupError(f"User not found: {id}")
                changed = replace(
                    current,
                    is_owner=current.is_owner if is_owner is None else bool(is_owner),
                    created_at=current.created_at if created_at is None else created_at,
                    updated_at=current.updated_at if updated_at is None else updated_at,
                )
                await self._query(id=id).update(
                    is_owner=changed.is_owner, created_at=changed.created_at, updated_at=changed.updated_at
                )
            self._cache.put(id, changed)

    async def delete(self, id: str) -> None:
        """Deletes a user (its keys and connections cascade); a missing id is a no-op.

        A user that still has sub-users raises the foreign key error and stays cached.
        """
        async with self._writing(id):
            current = self._cache.get(id) or await self._row_load(id)
            await self._query(id=id).delete()
            if current is not None:
                for key in current.connector_keys:
                    self._id_by_connector_key.pop(key.connector_key, None)
                self._id_by_nametag.pop(current.nametag, None)
            self._cache.drop(id)

    async def add_connector_key(self, user_id: str, connector_key: str) -> None:
        """Adds a key (not trimmed; in NFC) after the user's others; LookupError if the user is missing,
        ValueError for a blank key or user id."""
        key_check(user_id, "User id")
        key_check(connector_key, "User connector_key")
        connector_key = key_normalize(connector_key)
        async with self._writing(user_id):
            current = self._cache.get(user_id) or await self._row_load(user_id)
            if current is None:
                raise LookupError(f"User not found: {user_id}")
            rows = await _KEY_INSERT.rows(self._conn(), user_id=user_id, connector_key=connector_key)
            key = ConnectorKeyRecord(rows[0]["id"], user_id, connector_key)
            changed = replace(current, connector_keys=(*current.connector_keys, key))
            self._cache.put(user_id, changed)
            self._lookups_add(changed)

    async def _insert(self, record: UserRecord, connector_key: str) -> UserRecord:
        """Writes the user row and its key atomically; returns the record with the key's id."""
        async with self._db.in_transaction() as conn:
            if record.is_owner and self._db.shared:
                # Engines starting at once on an empty database would each create the owner.
                await transaction_lock(conn, "users owner")
                if await self._query(is_owner=True).exists():
                    raise OwnerExists("another engine created the owner meanwhile")
            await _USER_INSERT.run(conn, **{field: getattr(record, field) for field in USER_FIELDS})
            if not connector_key:
                return record
            rows = await _KEY_INSERT.rows(conn, user_id=record.id, connector_key=connector_key)
        return replace(record, connector_keys=(ConnectorKeyRecord(rows[0]["id"], record.id, connector_key),))

    async def _row_load(self, id: str, *, lock: bool = False) -> UserRecord | None:
        """The user's row and keys, bypassing the cache; `lock` (PostgreSQL, in a transaction) locks the row."""
        conn = self._conn()
        rows = await (self._locked_read if lock else _USER_BY_ID).rows(conn, id=id)
        return await self._user_with_keys(conn, rows[0]) if rows else None

    async def _user_with_keys(self, conn: BaseDBAsyncClient, row: Mapping[str, Any]) -> UserRecord | None:
        """The checked user of a row, its keys read; None (logged once) when the row cannot be read."""
        keys = await _KEYS_BY_USER.rows(conn, user_id=row["id"])
        return self._user_of(row, records_read(keys, _key_read, self._keys_skipped))

    def _user_of(self, row: Mapping[str, Any], keys: Sequence[ConnectorKeyRecord]) -> UserRecord | None:
        """The checked user of a row with its keys; None (logged once) when the row cannot be read."""
        try:
            user = self.record_read(row, keys)
            record_check(user, self.entity)
        except ROW_ERRORS as error:
            self._skipped.skip(row, error)
            return None
        return user

    async def rows_unreadable(self) -> list[UnreadableRow]:
        """The unreadable rows of users and of their connector keys."""
        found = await super().rows_unreadable()
        async for row in self._rows_all(KEY_FIELDS, UserConnectorKey):
            try:
                _key_read(row)
            except ROW_ERRORS as error:
                found.append(self._keys_skipped.unreadable(row, error))
        return found

    async def _read_with_keys(self, query: QuerySet[User], *, every_user: bool = False) -> list[UserRecord]:
        """The users `query` selects by created_at, then id, each with its keys."""
        rows = await query.order_by("created_at", "id").values(*USER_FIELDS)
        ids = [row["id"] for row in rows if isinstance(row["id"], str)]
        keys_query = UserConnectorKey.all() if every_user else UserConnectorKey.filter(user_id__in=ids)
        keys: dict[str, list[ConnectorKeyRecord]] = {}
        key_rows = await keys_query.using_db(self._conn()).order_by("id").values(*KEY_FIELDS)
        for key in records_read(key_rows, _key_read, self._keys_skipped):
            keys.setdefault(key.user_id, []).append(key)
        users = (self._user_of(row, keys.get(row["id"], ())) for row in rows)
        return [user for user in users if user is not None]

    def _lookups_add(self, record: UserRecord) -> None:
        self._id_by_nametag[record.nametag] = record.id
        for key in record.connector_keys:
            self._id_by_connector_key[key.connector_key] = record.id
