"""UsersRepository: users and their connector keys, behind the legacy write-through cache (C7).

`create` writes the user and its connector key in one transaction, so a lost race for a
connector key leaves no user row behind (the legacy code committed the user first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from tortoise.exceptions import IntegrityError

from daycare.schema import User
from daycare.storage.clock import now_ms
from daycare.storage.db.database import Database
from daycare.storage.identifiers import cuid_create, nametag_generate
from daycare.storage.repositories.cache import RecordCache

NAMETAG_ATTEMPTS = 100
NAMETAG_TAKEN = "UNIQUE constraint failed: users.nametag"
CONNECTOR_KEY_TAKEN = "user_connector_keys.connector_key"

# Reads and inserts are fixed, parameterised statements: they sit on the connector-key
# resolution path, where building a Tortoise queryset (~150 us) would cost more than the
# statement itself. Columns are listed so the record never depends on the table's order.
_USER_COLUMNS = "id, is_owner, parent_user_id, name, nametag, created_at, updated_at"
_USER_BY_ID = f"SELECT {_USER_COLUMNS} FROM users WHERE id = ? LIMIT 1"
_USERS_ALL = f"SELECT {_USER_COLUMNS} FROM users ORDER BY created_at ASC, id ASC"
_KEYS_BY_USER = "SELECT id, user_id, connector_key FROM user_connector_keys WHERE user_id = ? ORDER BY id ASC"
_KEYS_ALL = "SELECT id, user_id, connector_key FROM user_connector_keys ORDER BY id ASC"
_USER_ID_BY_KEY = "SELECT user_id FROM user_connector_keys WHERE connector_key = ? LIMIT 1"
_USER_ID_BY_NAMETAG = "SELECT id FROM users WHERE nametag = ? LIMIT 1"
_OWNER_ID = "SELECT id FROM users WHERE is_owner = 1 LIMIT 1"
_ANY_USER = "SELECT 1 FROM users LIMIT 1"
_USER_INSERT = (
    "INSERT INTO users (id, is_owner, parent_user_id, name, nametag, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_KEY_INSERT = "INSERT INTO user_connector_keys (user_id, connector_key) VALUES (?, ?)"


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


def connector_key_create(connector: str, user_id: str) -> str:
    """Builds `connector:userId` from trimmed parts; raises ValueError when a part is empty."""
    connector = connector.strip()
    user_id = user_id.strip()
    if not connector:
        raise ValueError("Connector is required")
    if not user_id:
        raise ValueError("Connector userId is required")
    return f"{connector}:{user_id}"


def constraint_failed_on(error: BaseException, target: str) -> bool:
    """Whether a database error is a UNIQUE violation naming `target` (legacy matched the message)."""
    message = str(error)
    return isinstance(error, IntegrityError) and "UNIQUE constraint failed" in message and target in message


def _user_parse(row: Any, keys: Sequence[Any]) -> UserRecord:
    return UserRecord(
        id=row["id"],
        is_owner=row["is_owner"] == 1,
        parent_user_id=row["parent_user_id"],
        name=row["name"],
        nametag=row["nametag"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        connector_keys=tuple(ConnectorKeyRecord(key["id"], key["user_id"], key["connector_key"]) for key in keys),
    )


def _users_sort(records: list[UserRecord]) -> list[UserRecord]:
    # Legacy sorted ids with JS localeCompare; cuid2 ids are lowercase alphanumerics, where it equals code order.
    return sorted(records, key=lambda record: (record.created_at, record.id))


class UsersRepository:
    """Users by id, connector key and nametag, cached per instance; returned records are frozen."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RecordCache[str, UserRecord] = RecordCache()
        self._id_by_connector_key: dict[str, str] = {}
        self._id_by_nametag: dict[str, str] = {}

    async def find_by_id(self, id: str) -> UserRecord | None:
        """The user with this id; once all users are loaded a cache miss is final (no query)."""
        cached = self._cache.records.get(id)
        if cached is not None:
            return cached
        if self._cache.all_loaded:
            return None
        async with self._cache.key_locks.hold(id):
            cached = self._cache.records.get(id)
            if cached is not None:
                return cached
            loaded = await self._row_load(id)
            if loaded is not None:
                self._cache_put(loaded)
            return loaded

    async def find_by_connector_key(self, connector_key: str) -> UserRecord | None:
        """The user owning this exact (untrimmed) key; always asks the database on a cache miss."""
        cached_id = self._id_by_connector_key.get(connector_key)
        if cached_id:
            return await self.find_by_id(cached_id)
        _, rows = await self._db.connection().execute_query(_USER_ID_BY_KEY, [connector_key])
        user_id = (rows[0]["user_id"] or "").strip() if rows else ""
        if not user_id:
            return None
        self._id_by_connector_key[connector_key] = user_id
        user = await self.find_by_id(user_id)
        if user is None:
            self._id_by_connector_key.pop(connector_key, None)
        return user

    async def find_by_nametag(self, nametag: str) -> UserRecord | None:
        """The user with this nametag (trimmed); an empty tag finds nobody."""
        nametag = nametag.strip()
        if not nametag:
            return None
        cached_id = self._id_by_nametag.get(nametag)
        if cached_id:
            return await self.find_by_id(cached_id)
        if self._cache.all_loaded:
            return None
        _, rows = await self._db.connection().execute_query(_USER_ID_BY_NAMETAG, [nametag])
        user_id = (rows[0]["id"] or "").strip() if rows else ""
        if not user_id:
            return None
        self._id_by_nametag[nametag] = user_id
        user = await self.find_by_id(user_id)
        if user is None:
            self._id_by_nametag.pop(nametag, None)
        return user

    async def find_many(self) -> list[UserRecord]:
        """Every user by created_at, then id; the first call loads them all and rebuilds the cache."""
        if self._cache.all_loaded:
            return _users_sort(list(self._cache.records.values()))
        connection = self._db.connection()
        _, user_rows = await connection.execute_query(_USERS_ALL)
        _, key_rows = await connection.execute_query(_KEYS_ALL)
        keys_by_user: dict[str, list[Any]] = {}
        for key_row in key_rows:
            keys_by_user.setdefault(key_row["user_id"], []).append(key_row)
        records = [_user_parse(row, keys_by_user.get(row["id"], ())) for row in user_rows]
        self._cache.records.clear()
        self._id_by_connector_key.clear()
        self._id_by_nametag.clear()
        for record in records:
            self._cache_put(record)
        self._cache.all_loaded = True
        return records

    async def find_owner(self) -> UserRecord | None:
        """The owner: the first cached owner, else (unless all users are loaded) the database's."""
        for record in self._cache.records.values():
            if record.is_owner:
                return record
        if self._cache.all_loaded:
            return None
        _, rows = await self._db.connection().execute_query(_OWNER_ID)
        user_id = (rows[0]["id"] or "").strip() if rows else ""
        return await self.find_by_id(user_id) if user_id else None

    async def find_by_parent_user_id(self, parent_user_id: str) -> list[UserRecord]:
        """The sub-users of a user by created_at, then id (loads every user once)."""
        if not self._cache.all_loaded:
            await self.find_many()
        return _users_sort([user for user in self._cache.records.values() if user.parent_user_id == parent_user_id])

    async def is_empty(self) -> bool:
        """Whether no user exists, without loading the users (one indexed query at most)."""
        if self._cache.records:
            return False
        if self._cache.all_loaded:
            return True
        _, rows = await self._db.connection().execute_query(_ANY_USER)
        return not rows

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
        """Inserts a user and its connector key (trimmed; empty: none) in one transaction; a given nametag
        is tried once, else up to 100 generated ones. Database errors propagate and leave no row."""
        async with self._cache.create_lock:
            created = now_ms() if created_at is None else created_at
            record = UserRecord(
                id=cuid_create() if id is None else id,
                is_owner=is_owner,
                parent_user_id=parent_user_id,
                name=name,
                nametag="",
                created_at=created,
                updated_at=created if updated_at is None else updated_at,
            )
            key = (connector_key or "").strip()
            explicit = (nametag or "").strip()
            for _ in range(1 if explicit else NAMETAG_ATTEMPTS):
                attempt = replace(record, nametag=explicit or nametag_generate())
                try:
                    stored = await self._insert(attempt, key)
                except IntegrityError as error:
                    if explicit or not constraint_failed_on(error, "users.nametag"):
                        raise
                    continue
                self._cache_put(stored)
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
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._row_load(id)
            if current is None:
                raise LookupError(f"User not found: {id}")
            changed = replace(
                current,
                is_owner=current.is_owner if is_owner is None else is_owner,
                created_at=current.created_at if created_at is None else created_at,
                updated_at=current.updated_at if updated_at is None else updated_at,
            )
            await (
                User.filter(id=id)
                .using_db(self._db.connection())
                .update(
                    is_owner=1 if changed.is_owner else 0,
                    created_at=changed.created_at,
                    updated_at=changed.updated_at,
                )
            )
            self._cache_put(changed)

    async def delete(self, id: str) -> None:
        """Deletes a user (its keys and connections cascade); a missing id is a no-op.

        A user that still has sub-users raises the foreign key error and stays cached.
        """
        async with self._cache.key_locks.hold(id):
            current = self._cache.records.get(id) or await self._row_load(id)
            await User.filter(id=id).using_db(self._db.connection()).delete()
            if current is not None:
                for key in current.connector_keys:
                    self._id_by_connector_key.pop(key.connector_key, None)
                self._id_by_nametag.pop(current.nametag, None)
            self._cache.records.pop(id, None)

    async def add_connector_key(self, user_id: str, connector_key: str) -> None:
        """Adds a key (not trimmed) after the user's others; LookupError if the user is missing."""
        async with self._cache.key_locks.hold(user_id):
            current = self._cache.records.get(user_id) or await self._row_load(user_id)
            if current is None:
                raise LookupError(f"User not found: {user_id}")
            key_id = await self._db.connection().execute_insert(_KEY_INSERT, [user_id, connector_key])
            key = ConnectorKeyRecord(key_id, user_id, connector_key)
            self._cache_put(replace(current, connector_keys=(*current.connector_keys, key)))

    async def _insert(self, record: UserRecord, connector_key: str) -> UserRecord:
        """Writes the user row and its key atomically; returns the record with the key's id."""
        async with self._db.in_transaction():
            connection = self._db.connection()
            await connection.execute_insert(
                _USER_INSERT,
                [
                    record.id,
                    1 if record.is_owner else 0,
                    record.parent_user_id,
                    record.name,
                    record.nametag,
                    record.created_at,
                    record.updated_at,
                ],
            )
            if not connector_key:
                return record
            key_id = await connection.execute_insert(_KEY_INSERT, [record.id, connector_key])
        return replace(record, connector_keys=(ConnectorKeyRecord(key_id, record.id, connector_key),))

    async def _row_load(self, id: str) -> UserRecord | None:
        connection = self._db.connection()
        _, rows = await connection.execute_query(_USER_BY_ID, [id])
        if not rows:
            return None
        _, keys = await connection.execute_query(_KEYS_BY_USER, [id])
        return _user_parse(rows[0], keys)

    def _cache_put(self, record: UserRecord) -> None:
        # Cache writes never await, so they are atomic under asyncio; no cache lock is needed.
        self._cache.records[record.id] = record
        self._id_by_nametag[record.nametag] = record.id
        for key in record.connector_keys:
            self._id_by_connector_key[key.connector_key] = record.id
