"""What every repository shares: its database, its model, reading named columns into records,
and, for the cached ones, the create/update/delete path behind the write-through cache.

A repository reads exactly the columns its record names (`fields`), so a column that a later
migration adds never breaks a read. A row it cannot read (broken JSON, a BLOB or text that is
not UTF-8 where text belongs, a value of the wrong type, NULL where the record needs a value) is
left out and logged once with its table and key: a single read finds nothing, a list is served
without it. Writes check the record's types first (`record_checks`), so they never create such
a row. A cached repository keeps the rule of
`daycare.storage.repositories.cache`; what differs between them is said by a few class
attributes (`fields`, `conflict`, `keep_if_none`, `nullable`) and a few small methods
(`key_of`, `key_filter`, `record_read`, `row_of`, `stored`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.fields import IntField
from tortoise.models import Model
from tortoise.queryset import QuerySet

from daycare.storage.db.database import Database
from daycare.storage.db.statements import Statement, locked_row_statement, upsert_statement
from daycare.storage.repositories.cache import CacheWrite, RecordCache
from daycare.storage.repositories.patches import record_patch
from daycare.storage.repositories.record_checks import (
    ROW_ERRORS,
    SkippedRows,
    UnreadableRow,
    record_check,
    records_read,
)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class Repository(Generic[R]):
    """A repository of one table: its database, and its records read from named columns."""

    model: ClassVar[type[Model]]
    fields: ClassVar[tuple[str, ...]]  # the fields a record is read from, as the model names them
    entity: ClassVar[str]  # how messages name one record: "Cron task"
    key_fields: ClassVar[tuple[str, ...]] = ("id",)  # the fields that name a row in logs
    _PAGE = 1000  # rows per statement of `rows_unreadable`

    def __init__(self, db: Database) -> None:
        self._db = db
        self._skipped = SkippedRows(self.model._meta.db_table, self.key_fields)

    def _conn(self) -> BaseDBAsyncClient:
        return self._db.connection()

    def _query(self, *args: Any, **filters: Any) -> QuerySet[Any]:
        """The model's queryset on this database, filtered by `args` (Q objects) and `filters`."""
        return self.model.filter(*args, **filters).using_db(self._conn())

    def record_read(self, row: Mapping[str, Any]) -> R:
        """The record for a row that holds (at least) the columns of `fields`; may raise for a broken row."""
        raise NotImplementedError

    def record_of(self, row: Mapping[str, Any]) -> R:
        """The record of a row, type-checked; raises (one of `ROW_ERRORS`) when the row cannot be read."""
        record = self.record_read(row)
        record_check(record, self.entity)
        return record

    def _records(self, rows: Iterable[Mapping[str, Any]]) -> list[R]:
        """The records of `rows`; a row that cannot be read is logged once and left out."""
        return records_read(rows, self.record_of, self._skipped)

    def _record(self, row: Mapping[str, Any]) -> R | None:
        """The record of one row; None (logged once) when it cannot be read: it reads as missing."""
        try:
            return self.record_of(row)
        except ROW_ERRORS as error:
            self._skipped.skip(row, error)
            return None

    def _write_check(self, record: R) -> None:
        """Raises ValueError or TypeError, naming the field, for a record the table must not hold."""
        record_check(record, self.entity)

    async def _read(self, query: QuerySet[Any] | Statement) -> list[R]:
        """The records of the rows `query` selects (its ordering and limit apply): a queryset, or a
        `rows_statement` of `fields` that takes no values."""
        if isinstance(query, Statement):
            return self._records(await query.rows(self._conn()))
        return self._records(await query.values(*self.fields))

    async def _read_first(self, query: QuerySet[Any]) -> R | None:
        row = await query.first().values(*self.fields)
        return None if row is None else self._record(row)

    async def rows_unreadable(self) -> list[UnreadableRow]:
        """Every row of the table that a read would leave out, and why (the data pass of `daycare db check`)."""
        found = []
        async for row in self._rows_all(self.fields):
            try:
                self.record_of(row)
            except ROW_ERRORS as error:
                found.append(self._skipped.unreadable(row, error))
        return found

    async def _rows_all(self, fields: Sequence[str], model: type[Model] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every row of the table (or of `model`'s), `_PAGE` rows per statement: by an integer key after
        the last one read, else by offset in key order."""
        model = model or self.model
        key = model._meta.pk_attr
        composite = tuple(getattr(model, "composite_key", ()))
        order = composite or (key,)
        read = fields if key in fields else (*fields, key)
        numbered = not composite and isinstance(model._meta.fields_map[key], IntField)
        after: Any = None
        offset = 0
        while True:
            query = model.all().using_db(self._conn())
            if numbered:
                page = (
                    await (query if after is None else query.filter(**{f"{key}__gt": after}))
                    .order_by(key)
                    .limit(self._PAGE)
                    .values(*read)
                )
            else:
                page = await query.order_by(*order).offset(offset).limit(self._PAGE).values(*read)
            for row in page:
                yield row
            if len(page) < self._PAGE:
                return
            after = page[-1][key]
            offset += len(page)


class CachedRepository(Repository[R], Generic[K, R]):
    """A repository with a write-through cache: create (an upsert), update (a merge) and delete by key."""

    conflict: ClassVar[tuple[str, ...]] = ("id",)  # the fields of the key the upsert conflicts on
    keep_if_none: ClassVar[frozenset[str]] = frozenset()  # update: None keeps the current value
    nullable: ClassVar[frozenset[str]] = frozenset()  # update: None clears the value
    _upsert: ClassVar[Statement]
    # The row of a key, locked until the transaction ends: how a shared database's updates read. Not Tortoise's
    # select_for_update: `values()` drops it, and a queryset judges it by the fallback context's capabilities.
    _locked_read: ClassVar[Statement]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "fields" in cls.__dict__:
            cls._upsert = upsert_statement(cls.model, cls.fields, cls.conflict)
            cls._locked_read = locked_row_statement(cls.model, cls.fields, cls.conflict)

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._cache: RecordCache[K, R] = RecordCache()

    # Per-repository rules; the defaults fit records keyed by `id` whose fields are their columns.

    def key_of(self, record: R) -> K:
        key: K = getattr(record, "id")  # noqa: B009 - records are dataclasses without a common base
        return key

    def key_filter(self, key: K) -> dict[str, Any]:
        """The queryset filter that selects the row of `key`."""
        return {"id": key}

    def row_of(self, record: R) -> dict[str, Any]:
        """The column values that store `record`, by field."""
        return {field: getattr(record, field) for field in self.fields}

    def stored(self, record: R) -> R:
        """The record as the table will hold it (trimmed, normalised); raises ValueError if it cannot be."""
        return record

    def changed(self, key: str) -> None:
        """Another engine changed the row(s) whose announced key is `key` (the `id` column, by default).

        A repository keyed otherwise forgets every record: on a table that changes rarely, that is cheaper
        than a lookup that would have to be exact while loads run.
        """
        if self.key_fields == ("id",):
            self._cache.invalidate(cast(K, key))
        else:
            self._cache.invalidate_all()

    def changes_missed(self) -> None:
        """Changes of other engines may have been missed: every record is forgotten."""
        self._cache.invalidate_all()

    # The shared paths.

    def _writing(self, key: K) -> CacheWrite[K, R]:
        """The cache rule's write side (`async with`): the key's lock, and no caller's transaction around it."""
        if isinstance(self._conn(), TransactionalDBClient):
            raise RuntimeError(
                f"{type(self).__name__} writes through its cache and must not run inside a caller's "
                "transaction: the cache would change before the COMMIT"
            )
        return self._cache.writing(key)

    async def _find(self, key: K) -> R | None:
        """The record of `key`: cached, else read (and cached); None once every row is loaded."""
        record = self._cache.get(key)
        if record is not None or self._cache.all_loaded:
            return record
        with self._cache.loading() as load:
            record = await self._read_first(self._query(**self.key_filter(key)))
            if record is not None:
                load.store([(key, record)])
        return record

    async def _read_cached(self, query: QuerySet[Any] | Statement, *, complete: bool = False) -> list[R]:
        """Reads records and caches them; `complete` says `query` selects every row of the table."""
        with self._cache.loading() as load:
            records = await self._read(query)
            load.store(((self.key_of(record), record) for record in records), complete=complete)
        return records

    async def _create(self, record: R) -> R:
        """Inserts the record, or overwrites every column of the row with its key; returns it as stored."""
        stored = self.stored(record)
        self._write_check(stored)
        key = self.key_of(stored)
        async with self._writing(key):
            await self._upsert.run(self._conn(), **self.row_of(stored))
            self._cache.put(key, stored)
        return stored

    async def _update(self, key: K, changes: Mapping[str, Any]) -> R:
        """Merges `changes` into the record of `key` and writes the whole row.

        Raises LookupError("<entity> not found: <key>"), TypeError for an unknown field or another
        id, and ValueError for a None the field cannot take.
        """
        shared = self._db.shared
        async with self._writing(key):
            # Several engines: the row is read locked, in the transaction that writes it, so no engine's
            # update is lost to another's merge of an older record.
            async with self._db.in_transaction() if shared else contextlib.nullcontext():
                filters = self.key_filter(key)
                if shared:
                    rows = await self._locked_read.rows(self._conn(), **filters)
                    current = self._record(rows[0]) if rows else None
                else:
                    current = self._cache.get(key) or await self._read_first(self._query(**filters))
                if current is None:
                    raise LookupError(f"{self.entity} not found: {self._key_text(key)}")
                patched: R = record_patch(
                    cast(Any, current),
                    changes,
                    entity=self.entity,
                    keep_if_none=self.keep_if_none,
                    nullable=self.nullable,
                )
                changed = self.stored(patched)
                self._write_check(changed)
                row = self.row_of(changed)
                for field in self.conflict:
                    row.pop(field)
                await self._query(**self.key_filter(key)).update(**row)
            self._moved(key, changed)
        return changed

    async def _delete(self, key: K) -> bool:
        """Deletes the row of `key`; whether there was one."""
        async with self._writing(key):
            removed = await self._query(**self.key_filter(key)).delete()
            self._cache.drop(key)
        return bool(removed)

    def _moved(self, key: K, record: R) -> None:
        """Caches an updated record; one that moved to another key is read again from there."""
        new_key = self.key_of(record)
        if new_key == key:
            self._cache.put(key, record)
        else:
            self._cache.drop(key)
            self._cache.evict(new_key)  # not this write's key: its lock is not held here

    @staticmethod
    def _key_text(key: K) -> str:
        return key[-1] if isinstance(key, tuple) else str(key)
