"""Copies a whole Daycare database into a new one, SQLite or PostgreSQL either way (`daycare db copy`).

The source is opened read-only and must be a Daycare database with every migration of its chain
applied and the schema they make. The target must hold no rows but those its baseline makes (the
bootstrap owner, the legacy step names); it is checked, then migrated with its own chain. Every
refusal comes before anything is written.

Then, in one snapshot of the source and one transaction on the target:
- the baseline's rows are deleted, and every table of `daycare.schema` is copied, parents before
  children (the models' foreign keys and the target's), each table's rows in key order
  (`signals_events` in insertion order: SQLite's rowid, PostgreSQL's `insertion_order`), read and
  written in batches (executemany on SQLite, one COPY per table on PostgreSQL);
- each value is converted explicitly by its model field (0/1 <-> BOOLEAN, INTEGER, REAL, TEXT,
  BLOB), and one that the target cannot hold (a NUL in text for PostgreSQL, text that is not UTF-8,
  a flag that is not 0/1) stops the copy with the table and the row's key;
- the AUTOINCREMENT / identity counters are carried over (never below the largest id copied);
- every table is read back from the target in the same order, and its row count and sha256 (of
  each column's values, each encoded with its type) must equal the source's, or the transaction
  rolls back.

The `aerich` table is not copied: the target keeps its own chain's record. `_migrations` (the
legacy runner's record) is copied like the other tables. Tables that no model describes (left by
a legacy step no release uses) are not copied and are named in the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import marshal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import BaseORMException
from tortoise.models import Model

from daycare import schema
from daycare.storage.db import postgres, sqlite
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.location import POSTGRES, DatabaseLocation, database_location
from daycare.storage.db.lock import UPGRADE, database_lock_wait
from daycare.storage.errors import DatabaseRefused, StorageError
from daycare.storage.migrations.adoption import adoption_check
from daycare.storage.migrations.catalog import application_table, database_display
from daycare.storage.migrations.inspection import FileKind, file_inspect
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.migrations.migrate import CheckOutcome, database_check, database_migrate
from daycare.storage.migrations.progress import Progress, ProgressCounter, progress_none
from daycare.storage.migrations.schema_check import schema_report

log = logging.getLogger("daycare.storage")

BATCH = 10_000  # rows read, checked and written at a time: bounds the memory a large table takes

TEXT, INTEGER, BOOLEAN, REAL, BLOB = "text", "integer", "boolean", "real", "blob"

# What each kind of column holds once read, whatever the database: the values compared and written.
_CANONICAL: dict[str, frozenset[type]] = {
    TEXT: frozenset({str}),
    INTEGER: frozenset({int}),
    BOOLEAN: frozenset({bool}),
    REAL: frozenset({float}),
    BLOB: frozenset({bytes}),
}
_FLAGS = {0: False, 1: True}  # SQLite's 0/1 -> BOOLEAN (None maps to None through .get)
_FLAG_INTEGERS = {False: 0, True: 1}
_NONE = type(None)
_NUL_PROBLEM = "a NUL character (\\x00), which PostgreSQL text cannot hold"

# Tables whose readers break ties by insertion order (`dialect.insertion_order`): copied in that order.
INSERTION_ORDERED: tuple[type[Model], ...] = (schema.SignalEvent,)
# Rows the baselines write into a new database, which the copy replaces with the source's.
BASELINE_TABLES: tuple[type[Model], ...] = (schema.User, schema.LegacyMigration)

_NOTHING_COPIED = "Nothing was copied: the transaction on the target was rolled back."


class CopyFailed(StorageError):
    """The copy stopped; the target's transaction was rolled back, so it holds none of the source's rows."""


class _CopyDialect(Protocol):
    """What `daycare.storage.db.sqlite` and `daycare.storage.db.postgres` provide for copying."""

    INSERTION_ORDER: str

    async def copy_snapshot_begin(self, conn: BaseDBAsyncClient) -> None: ...

    def copy_rows_read(
        self,
        conn: BaseDBAsyncClient,
        table: str,
        columns: Sequence[str],
        order: Sequence[str],
        batch: int,
        text_columns: Collection[str] = (),
    ) -> AsyncGenerator[Sequence[Sequence[Any]], None]: ...

    async def copy_write_begin(self, conn: BaseDBAsyncClient, tables: Sequence[str]) -> list[str]: ...

    async def copy_write_end(self, conn: BaseDBAsyncClient, statements: Sequence[str]) -> None: ...

    async def copy_rows_write(
        self,
        conn: BaseDBAsyncClient,
        table: str,
        columns: Sequence[str],
        batches: AsyncIterator[Sequence[Sequence[Any]]],
    ) -> None: ...

    async def copy_foreign_key_violation(
        self, conn: BaseDBAsyncClient, keys: Mapping[str, Sequence[str]]
    ) -> tuple[str, Sequence[Any], str] | None: ...

    async def copy_sequence_read(self, conn: BaseDBAsyncClient, table: str, column: str) -> int: ...

    async def copy_sequence_set(self, conn: BaseDBAsyncClient, table: str, column: str, value: int) -> None: ...

    async def table_foreign_keys(self, conn: BaseDBAsyncClient, table: str) -> list[sqlite.ForeignKeyInfo]: ...


def _dialect(name: str) -> _CopyDialect:
    return postgres if name == POSTGRES else sqlite


# The tables, as the models describe them.


@dataclass(frozen=True)
class CopyColumn:
    name: str
    kind: str  # TEXT, INTEGER, BOOLEAN, REAL or BLOB


@dataclass(frozen=True)
class CopyTable:
    """One table to copy: its columns (by model field), its key, and what orders and counts its rows."""

    model: type[Model]
    name: str
    columns: tuple[CopyColumn, ...]
    key: tuple[str, ...]
    insertion_ordered: bool
    identity: str | None  # the AUTOINCREMENT / identity key column, whose counter is carried over
    parents: frozenset[str]  # tables its models' foreign keys point at

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def order(self, dialect: _CopyDialect) -> tuple[str, ...]:
        """The columns that sort the rows, the same on both sides."""
        return (dialect.INSERTION_ORDER,) if self.insertion_ordered else self.key

    @property
    def text_columns(self) -> frozenset[str]:
        return frozenset(column.name for column in self.columns if column.kind == TEXT)


def _field_kind(field_object: fields.Field[Any]) -> str:
    if isinstance(field_object, fields.BooleanField):
        return BOOLEAN
    if isinstance(field_object, fields.IntField):  # BigIntField and SmallIntField too
        return INTEGER
    if isinstance(field_object, fields.FloatField):
        return REAL
    if isinstance(field_object, fields.TextField | fields.CharField):
        return TEXT
    if isinstance(field_object, fields.BinaryField):
        return BLOB
    raise TypeError(f"no copy conversion for {type(field_object).__name__}: add one to daycare.storage.migrations.copy")


def _model_named(reference: str) -> type[Model]:
    """The model of a foreign key's "models.Name"."""
    model: type[Model] = getattr(schema, reference.rsplit(".", 1)[-1])
    return model


def copy_table(model: type[Model]) -> CopyTable:
    """The table behind `model`: every column its fields declare, in declaration order."""
    meta = model._meta
    columns: dict[str, CopyColumn] = {}
    parents = set()
    for name, field_object in meta.fields_map.items():
        if isinstance(field_object, fields.relational.ForeignKeyFieldInstance):
            reference = field_object.model_name
            parent = _model_named(reference) if isinstance(reference, str) else reference
            parents.add(parent._meta.db_table)
            column = field_object.source_field or f"{name}_id"
            columns.setdefault(column, CopyColumn(column, _field_kind(parent._meta.pk)))
        elif isinstance(field_object, fields.relational.RelationalField):
            continue
        else:
            column = field_object.source_field or name
            columns.setdefault(column, CopyColumn(column, _field_kind(field_object)))
    composite: tuple[str, ...] = getattr(model, "composite_key", ())
    pk = meta.pk
    key = composite or (pk.source_field or meta.pk_attr,)
    identity = key[0] if not composite and isinstance(pk, fields.IntField) and pk.generated else None
    return CopyTable(
        model, meta.db_table, tuple(columns.values()), key, model in INSERTION_ORDERED, identity, frozenset(parents)
    )


def copy_tables(extra_parents: Mapping[str, Collection[str]] | None = None) -> list[CopyTable]:
    """Every table of `daycare.schema`, parents before children.

    The order follows the models' foreign keys and `extra_parents` (table -> tables it refers to:
    the keys only the SQL declares, read from the target's catalog); ties keep the models' order.
    """
    tables = [copy_table(model) for model in schema.__models__]
    names = {table.name for table in tables}
    parents = {
        table.name: (set(table.parents) | set((extra_parents or {}).get(table.name, ()))) & names - {table.name}
        for table in tables
    }
    ordered: list[CopyTable] = []
    placed: set[str] = set()
    while len(ordered) < len(tables):
        ready = [table for table in tables if table.name not in placed and parents[table.name] <= placed]
        if not ready:
            cycle = sorted(names - placed)
            raise RuntimeError(f"the foreign keys between {', '.join(cycle)} form a cycle")
        ordered.append(ready[0])
        placed.add(ready[0].name)
    return ordered


# Values, converted a column at a time: a batch's values are checked with set and map (C speed),
# and only a batch with a value out of place is searched row by row for the message.


class _BadValue(Exception):
    def __init__(self, index: int, problem: str) -> None:
        super().__init__(problem)
        self.index = index
        self.problem = problem


def _value_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_bad(values: Sequence[Any], good: Callable[[Any], bool], problem: Callable[[Any], str]) -> _BadValue:
    for index, value in enumerate(values):
        if value is not None and not good(value):
            return _BadValue(index, problem(value))
    raise AssertionError("no bad value found")  # the caller saw one


def _column_canonical(kind: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
    """`values` as the canonical Python type of `kind` (None stays None); raises _BadValue for one that is not."""
    types = set(map(type, values))
    types.discard(_NONE)
    allowed = _CANONICAL[kind]
    if types <= allowed:
        return values
    if kind == BOOLEAN and types <= {int} and set(values) <= {0, 1, None}:
        return tuple(map(_FLAGS.get, values))
    if kind == REAL and types <= {int, float}:
        return tuple(value if value is None else float(value) for value in values)
    if kind == BLOB and types <= {bytes, bytearray, memoryview}:
        return tuple(value if value is None else bytes(value) for value in values)
    if kind == BOOLEAN:
        raise _first_bad(values, lambda v: type(v) in (bool, int) and v in (0, 1), _not_flag)
    if kind == TEXT:
        raise _first_bad(values, lambda v: type(v) is str, _not_text)
    wanted = {INTEGER: "an integer", REAL: "a number", BLOB: "bytes"}[kind]
    fits = allowed | {int} if kind == REAL else allowed
    raise _first_bad(values, lambda v: type(v) in fits, lambda v: f"{_value_text(v)}, not {wanted}")


def _not_flag(value: Any) -> str:
    return f"{_value_text(value)}, not a 0/1 flag"


def _not_text(value: Any) -> str:
    data = getattr(value, "data", None)  # UndecodableText: TEXT whose bytes are not UTF-8
    if isinstance(data, bytes):
        return f"text that is not UTF-8 ({_value_text(data)})"
    return f"{_value_text(value)}, not text"


def _nul_check(values: Sequence[Any]) -> None:
    """Raises _BadValue for the first text holding a NUL character, which PostgreSQL's text cannot hold."""
    if "\x00" in "".join(filter(None, values)):
        raise _first_bad(values, lambda v: "\x00" not in v, lambda v: _NUL_PROBLEM)


def _key_text(table: CopyTable, key: Sequence[Any]) -> str:
    pairs = [f"{name}={_value_text(value)}" for name, value in zip(table.key, key, strict=False)]
    return pairs[0] if len(pairs) == 1 else "(" + ", ".join(pairs) + ")"


class _TableSum:
    """What was seen of one table: its row count, and a sha256 of each column's values in row order.

    A column's values are encoded with marshal version 2 (each value with its type: 1, True and
    1.0 differ; no back-references, so equal values always encode alike), without the tuple's
    header, so the digest does not depend on how the rows were cut into batches.
    """

    def __init__(self, width: int) -> None:
        self.rows = 0
        self._columns = [hashlib.sha256() for _ in range(width)]

    def add(self, columns: Sequence[tuple[Any, ...]]) -> None:
        for digest, values in zip(self._columns, columns, strict=True):
            digest.update(marshal.dumps(values, 2)[_TUPLE_HEADER:])
        self.rows += len(columns[0]) if columns else 0

    def digest(self) -> bytes:
        return hashlib.sha256(b"".join(column.digest() for column in self._columns)).digest()


_TUPLE_HEADER = len(marshal.dumps((), 2))  # the type code and the length of a marshalled tuple


class _Reader:
    """Turns the pages of one table read from one side into canonical columns, counted and hashed.

    A page is transposed once: each column is checked and converted with set and map (C speed),
    and only a column with a value out of place is searched row by row, for the message.
    """

    def __init__(self, table: CopyTable, *, for_postgres: bool = False) -> None:
        self.table = table
        self.for_postgres = for_postgres  # also refuse the values PostgreSQL cannot hold
        self.width = len(table.columns)
        self.total = _TableSum(self.width)
        self.key_positions = [table.names.index(name) for name in table.key]

    def read(self, page: Sequence[Sequence[Any]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The page's columns as read and as canonical values; raises CopyFailed for a value out of place."""
        raw: list[tuple[Any, ...]] = list(zip(*page, strict=True))[: self.width]
        canonical = []
        for column, values in zip(self.table.columns, raw, strict=True):
            try:
                converted = _column_canonical(column.kind, values)
                if column.name in self.table.key and None in converted:
                    raise _BadValue(converted.index(None), "NULL, and a key column needs a value")
                if self.for_postgres and column.kind == TEXT:
                    _nul_check(converted)
            except _BadValue as bad:
                key = _key_text(self.table, [raw[position][bad.index] for position in self.key_positions])
                raise CopyFailed(
                    f"Cannot copy {self.table.name} row {key}: its column {column.name} holds {bad.problem}.",
                    f"{_NOTHING_COPIED} Repair that row in the source, then copy again.",
                ) from None
            canonical.append(converted)
        self.total.add(canonical)
        return raw, canonical


def _rows_to_write(
    table: CopyTable,
    page: Sequence[Sequence[Any]],
    raw: list[tuple[Any, ...]],
    canonical: list[tuple[Any, ...]],
    *,
    source: str,
    target: str,
) -> Sequence[Sequence[Any]]:
    """The page's rows as the target stores them: canonical values, BOOLEAN as 0/1 on SQLite.

    Rows whose values need no change are passed on as they were read.
    """
    columns = []
    for column, read, values in zip(table.columns, raw, canonical, strict=True):
        if column.kind == BOOLEAN and target != POSTGRES:
            values = read if source != POSTGRES else tuple(map(_FLAG_INTEGERS.get, values))
        columns.append(values)
    if len(page[0]) == len(columns) and all(out is read for out, read in zip(columns, raw, strict=True)):
        return page
    return list(zip(*columns, strict=True))


# The copy.

T = TypeVar("T")
READ_AHEAD = 2  # batches read and checked ahead of the one being written


async def _read_ahead(items: AsyncGenerator[T, None], depth: int = READ_AHEAD) -> AsyncGenerator[T, None]:
    """Yields what `items` yields, produced by a task that runs up to `depth` items ahead.

    While the target's server takes in one batch, this process reads and checks the next ones.
    """
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(depth)

    async def produce() -> None:
        try:
            async with contextlib.aclosing(items):
                async for item in items:
                    await queue.put((True, item))
        except Exception as exc:
            await queue.put((False, exc))
        else:
            await queue.put((False, None))

    task = asyncio.create_task(produce())
    try:
        while True:
            more, item = await queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True)
class CopyResult:
    """What was copied: rows per table, in copy order, and how long it took."""

    source: str
    target: str
    tables: dict[str, int]
    seconds: float
    applied: tuple[str, ...] = ()  # migrations applied to the target first
    left_out: tuple[str, ...] = ()  # source tables that no model describes

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def lines(self) -> list[str]:
        rate = f", {self.rows / self.seconds:,.0f} rows/s" if self.seconds > 0 and self.rows else ""
        lines = [
            f"Copied {self.rows:,} rows of {len(self.tables)} tables from {self.source} to {self.target}"
            f" in {self.seconds:.1f} s{rate}; every table's row count and sha256 match."
        ]
        if self.left_out:
            lines.append(f"Not copied (no Daycare model describes them): {', '.join(self.left_out)}.")
        return lines


def _same_location(source: DatabaseLocation, target: DatabaseLocation) -> bool:
    if source.server is None or target.server is None:
        return (
            source.server is None and target.server is None and source.path is not None and source.path == target.path
        )
    where = (source.server.host, source.server.port or 5432, source.server.database, source.schema)
    return where == (target.server.host, target.server.port or 5432, target.server.database, target.schema)


async def _source_check(db: Database) -> None:
    """Raises DatabaseRefused unless `db` is a Daycare database, up to date, with the schema its migrations make."""
    where = db.location.display
    check = await database_check(db)  # refuses another application's database and a newer Daycare's
    status = check.status
    if check.outcome is CheckOutcome.FRESH:
        raise DatabaseRefused(f"{where} holds no Daycare tables: there is nothing to copy.", "Check --from.")
    if status.state.kind is not FileKind.AERICH or status.pending:
        pending = ", ".join(status.pending) or "adoption of the legacy file"
        raise DatabaseRefused(
            f"{where} needs an upgrade before it can be copied (pending: {pending}).",
            f"Run daycare upgrade --db {where} first (it writes a backup), then copy it. Nothing was changed.",
        )
    if check.outcome is CheckOutcome.DRIFT:
        raise DatabaseRefused(
            f"The schema of {where} differs from what its migrations create:",
            schema_report(check.issues),
            "Repair it (daycare db check lists the same), then copy it. Nothing was changed.",
        )


async def _rows_beyond_baseline(
    conn: BaseDBAsyncClient, tables: Sequence[CopyTable], present: Collection[str]
) -> list[str]:
    """The tables that hold rows a baseline did not write, as `name (N rows)`; empty when there are none."""
    found = []
    for table in tables:
        if table.name not in present:
            continue
        count = await table.model.all().using_db(conn).count()
        if table.model is schema.LegacyMigration or count == 0:
            continue  # the legacy step names a SQLite baseline records
        if (
            table.model is schema.User
            and count == 1
            and await schema.User.filter(is_owner=True).using_db(conn).exists()
        ):
            continue  # the bootstrap owner, replaced by the source's users
        found.append(f"{table.name} ({count:,} rows)")
    return found


def _target_refusal(where: str, found: list[str]) -> DatabaseRefused:
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more tables" if len(found) > 5 else "")
    return DatabaseRefused(
        f"{where} already holds data: {shown}.",
        "The copy only goes into a new database (or one that holds nothing but its bootstrap owner)."
        " Point --to at a new file or an empty schema. Nothing was changed.",
    )


async def _target_prepare(
    db: Database, tables: Sequence[CopyTable], notify: Callable[[str], None], progress: Progress
) -> tuple[str, ...]:
    """Refuses a target that holds data or cannot be migrated, then migrates it; returns what was applied."""
    conn = db.connection()
    state = await file_inspect(conn)
    await adoption_check(conn, state, migrations_load(dialect=db.dialect))
    found = await _rows_beyond_baseline(conn, tables, state.tables)
    if found:
        raise _target_refusal(db.location.display, found)
    return tuple(await database_migrate(db, backup=False, notify=notify, progress=progress))


async def _parents_read(
    conn: BaseDBAsyncClient, dialect: _CopyDialect, tables: Sequence[CopyTable]
) -> dict[str, set[str]]:
    """Table -> the tables its foreign keys point at, as the target's catalog declares them."""
    return {table.name: {key.table for key in await dialect.table_foreign_keys(conn, table.name)} for table in tables}


class _Copy:
    """One copy from an open source to an open, migrated target."""

    def __init__(self, source: Database, target: Database, progress: Progress, batch: int) -> None:
        self.source = source
        self.target = target
        self.source_dialect = _dialect(source.dialect)
        self.target_dialect = _dialect(target.dialect)
        self.progress = progress
        self.batch = batch

    async def run(self, tables: list[CopyTable]) -> dict[str, int]:
        async with self.source.in_transaction() as source_conn:
            await self.source_dialect.copy_snapshot_begin(source_conn)
            counts = {table.name: await table.model.all().using_db(source_conn).count() for table in tables}
            async with self.target.in_transaction() as target_conn:
                await self._target_empty(target_conn, tables)
                restore = await self.target_dialect.copy_write_begin(target_conn, [table.name for table in tables])
                sums = await self._tables_write(source_conn, target_conn, tables, counts)
                await self._keys_restore(target_conn, restore)
                await self._foreign_keys_check(target_conn, tables)
                for table in tables:
                    if table.identity is not None:
                        high = await self.source_dialect.copy_sequence_read(source_conn, table.name, table.identity)
                        await self.target_dialect.copy_sequence_set(target_conn, table.name, table.identity, high)
                await self._tables_verify(target_conn, tables, sums)
        return {table.name: sums[table.name].rows for table in tables}

    async def _target_empty(self, conn: BaseDBAsyncClient, tables: Sequence[CopyTable]) -> None:
        """Checks again, inside the transaction, that the target holds nothing, then deletes the baseline's rows."""
        found = await _rows_beyond_baseline(conn, tables, {table.name for table in tables})
        if found:
            raise _target_refusal(self.target.location.display, found)
        for model in BASELINE_TABLES:
            await model.all().using_db(conn).delete()

    async def _tables_write(
        self,
        source_conn: BaseDBAsyncClient,
        target_conn: BaseDBAsyncClient,
        tables: Sequence[CopyTable],
        counts: Mapping[str, int],
    ) -> dict[str, _TableSum]:
        counter = ProgressCounter(self.progress, "Copying rows", sum(counts.values()))
        sums = {}
        for table in tables:
            read = sums[table.name] = await self._table_write(source_conn, target_conn, table, counter)
            if read.rows != counts[table.name]:
                raise CopyFailed(
                    f"{table.name}: counted {counts[table.name]:,} rows in the source but read {read.rows:,}.",
                    _NOTHING_COPIED,
                )
        counter.finish()
        return sums

    async def _table_write(
        self,
        source_conn: BaseDBAsyncClient,
        target_conn: BaseDBAsyncClient,
        table: CopyTable,
        counter: ProgressCounter,
    ) -> _TableSum:
        """Streams one table from the source into the target; returns the count and checksum of what it read."""
        reader = _Reader(table, for_postgres=self.target.dialect == POSTGRES)
        source, target = self.source.dialect, self.target.dialect
        pages = self.source_dialect.copy_rows_read(
            source_conn, table.name, table.names, table.order(self.source_dialect), self.batch, table.text_columns
        )

        async def written() -> AsyncGenerator[Sequence[Sequence[Any]], None]:
            async with contextlib.aclosing(pages):
                async for page in pages:
                    raw, canonical = reader.read(page)
                    counter.advance(len(page))
                    yield _rows_to_write(table, page, raw, canonical, source=source, target=target)

        try:
            await self.target_dialect.copy_rows_write(target_conn, table.name, table.names, _read_ahead(written()))
        except BaseORMException as exc:
            raise CopyFailed(
                f"Cannot copy {table.name} into {self.target.location.display}: {exc}.", _NOTHING_COPIED
            ) from None
        return reader.total

    async def _keys_restore(self, conn: BaseDBAsyncClient, statements: Sequence[str]) -> None:
        """Makes again the keys and indexes the bulk write went without, which checks them."""
        counter = ProgressCounter(self.progress, "Building keys and indexes", len(statements))
        for statement in statements:
            try:
                await self.target_dialect.copy_write_end(conn, [statement])
            except BaseORMException as exc:
                raise CopyFailed(
                    f"The copied rows break a key of {self.target.location.display}: {exc}.", _NOTHING_COPIED
                ) from None
            counter.advance()
        counter.finish()

    async def _foreign_keys_check(self, conn: BaseDBAsyncClient, tables: Sequence[CopyTable]) -> None:
        violation = await self.target_dialect.copy_foreign_key_violation(conn, {t.name: t.key for t in tables})
        if violation is not None:
            name, key, parent = violation
            table = next(t for t in tables if t.name == name)
            raise CopyFailed(
                f"Cannot copy {name} row {_key_text(table, key)}: it refers to a row of {parent} that does not exist.",
                f"{_NOTHING_COPIED} Repair that row in the source, then copy again.",
            )

    async def _tables_verify(
        self, conn: BaseDBAsyncClient, tables: Sequence[CopyTable], sums: Mapping[str, _TableSum]
    ) -> None:
        """Reads every table back from the target and compares its row count and checksum with the source's."""
        counter = ProgressCounter(self.progress, "Checking the copy", sum(total.rows for total in sums.values()))
        for table in tables:
            reader = _Reader(table)
            pages = _read_ahead(
                self.target_dialect.copy_rows_read(
                    conn, table.name, table.names, table.order(self.target_dialect), self.batch, table.text_columns
                )
            )  # the server sends the next batch while this one is hashed
            async with contextlib.aclosing(pages):
                async for page in pages:
                    reader.read(page)
                    counter.advance(len(page))
            expected, found = sums[table.name], reader.total
            if found.rows != expected.rows or found.digest() != expected.digest():
                what = f"{found.rows:,} rows where {expected.rows:,} were written"
                if found.rows == expected.rows:
                    what = f"its {found.rows:,} rows read back differ from those written (sha256)"
                raise CopyFailed(f"The copy of {table.name} does not match the source: {what}.", _NOTHING_COPIED)
        counter.finish()


async def database_copy(
    source: str | DatabaseLocation,
    target: str | DatabaseLocation,
    *,
    notify: Callable[[str], None] = log.info,
    progress: Progress = progress_none,
    batch: int = BATCH,
) -> CopyResult:
    """Copies every row of the Daycare database at `source` into the new database at `target` (see the module).

    Raises DatabaseRefused before anything is written when the source is not an up-to-date Daycare
    database or the target holds data, and CopyFailed (after a rollback) when a row cannot be copied.
    """
    started = time.perf_counter()
    source_location = source if isinstance(source, DatabaseLocation) else database_location(source)
    target_location = target if isinstance(target, DatabaseLocation) else database_location(target)
    if _same_location(source_location, target_location):
        raise DatabaseRefused(f"--from and --to name the same database ({source_location.display}).")
    source_db = await database_open(source_location, create=False, read_only=True)
    try:
        await _source_check(source_db)
        source_tables = (await file_inspect(source_db.connection())).tables
        # Held for the whole copy, as by an upgrade: no engine starts on the target meanwhile.
        async with await database_lock_wait(target_location, UPGRADE, notify=notify) or contextlib.nullcontext():
            target_db = await database_open(target_location)
            try:
                if await database_display(source_db.connection()) == await database_display(target_db.connection()):
                    raise DatabaseRefused(f"--from and --to name the same database ({source_location.display}).")
                applied = await _target_prepare(target_db, copy_tables(), notify, progress)
                target_dialect = _dialect(target_db.dialect)
                tables = copy_tables(await _parents_read(target_db.connection(), target_dialect, copy_tables()))
                notify(f"Copying {source_location.display} to {target_location.display}")
                counts = await _Copy(source_db, target_db, progress, batch).run(tables)
            finally:
                await database_close(target_db)
    finally:
        await database_close(source_db)
    known = {table.name for table in tables}
    left_out = tuple(
        sorted(name for name in source_tables if name not in known and application_table(name, source_db.dialect))
    )
    return CopyResult(
        source_location.display,
        target_location.display,
        counts,
        time.perf_counter() - started,
        applied,
        left_out,
    )
