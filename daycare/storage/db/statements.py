"""Statements the ORM builds once per dialect, for the paths where building a queryset costs too much.

A Tortoise queryset is rebuilt on every call, which costs about 150 us: more than a whole
`synchronous=NORMAL` commit. The busiest statements (an agent by id, a history append, an
inbox upsert, ...) are therefore `Statement`s: a function that builds the query with
pypika-tortoise, Tortoise's own query builder, from the models' metadata, with named `slot`s
where the values go. The first run on a connection of some dialect builds the SQL text and
the order of its parameters; every later run binds the values by name. Repositories hold no
SQL text either way: the builder writes it, in the dialect of the connection it runs on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pypika_tortoise.context import SqlContext
from pypika_tortoise.queries import Query, QueryBuilder, Table
from pypika_tortoise.terms import Criterion, Field, Parameterizer, Term
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model


@dataclass(frozen=True, slots=True)
class Slot:
    """A named place for a value in a statement; the value is bound when the statement runs."""

    name: str


def slot(name: str) -> Any:
    """A `Slot`, typed as Any so that it fits wherever the query builder takes a value."""
    return Slot(name)


class ModelTable:
    """A model's table for the query builder: `ModelTable(Agent)["user_id"]` is that field's column."""

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        self.table = Table(model._meta.db_table)

    def __getitem__(self, field: str) -> Field:
        return self.table.field(self.column_name(field))

    def column_name(self, field: str) -> str:
        """The column that holds this field."""
        projection = self.model._meta.fields_db_projection
        if field not in projection:
            raise KeyError(f"{self.model.__name__} has no field {field!r}")
        return projection[field]

    def columns(self, fields: Iterable[str]) -> list[Field]:
        """The columns of these fields, in order."""
        return [self[field] for field in fields]


class IsNotNull(Criterion):
    """`column IS NOT NULL`: pypika writes `NOT column IS NULL`, which SQLite cannot answer from an index."""

    def __init__(self, term: Term) -> None:
        super().__init__()
        self.term = term

    def get_sql(self, ctx: SqlContext) -> str:
        return f"{self.term.get_sql(ctx)} IS NOT NULL"


class _SlotParameterizer(Parameterizer):
    """Turns values into parameters, but keeps terms (such as `count + excluded.count`) as SQL."""

    def should_parameterize(self, value: Any) -> bool:
        return not isinstance(value, Term) and super().should_parameterize(value)


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    slots: tuple[str, ...]  # the slot name of each parameter, in parameter order
    constants: tuple[Any, ...] | None  # the parameter values when some are constants, else None

    def values(self, bound: Mapping[str, Any]) -> list[Any]:
        if self.constants is None:
            return [bound[name] for name in self.slots]
        return [bound[name] if name else constant for name, constant in zip(self.slots, self.constants, strict=True)]


Build = Callable[[type[Query]], QueryBuilder]


class Statement:
    """One statement, built by `build(query_class)` on first use per dialect and reused afterwards."""

    def __init__(self, build: Build) -> None:
        self._build = build
        self._compiled: dict[type[Query], _Compiled] = {}
        self._names: frozenset[str] | None = None

    def compiled(self, conn: BaseDBAsyncClient) -> _Compiled:
        """The SQL text and parameter order for the dialect of `conn`."""
        compiled = self._compiled.get(conn.query_class)
        if compiled is None:
            compiled = self._compile(conn.query_class)
            self._compiled[conn.query_class] = compiled
        return compiled

    def _compile(self, query_class: type[Query]) -> _Compiled:
        query = self._build(query_class)
        parameterizer = _SlotParameterizer()
        sql = query.get_sql(query.QUERY_CLS.SQL_CONTEXT.copy(parameterizer=parameterizer))
        names = tuple(value.name if isinstance(value, Slot) else "" for value in parameterizer.values)
        constants = None if all(names) else tuple(parameterizer.values)
        self._names = frozenset(name for name in names if name)
        return _Compiled(sql, names, constants)

    def _values(self, conn: BaseDBAsyncClient, bound: Mapping[str, Any]) -> tuple[str, list[Any]]:
        compiled = self.compiled(conn)
        try:
            if len(bound) == len(self._names or ()):
                return compiled.sql, compiled.values(bound)
        except KeyError:
            pass
        raise TypeError(f"this statement takes the values {sorted(self._names or ())}, got {sorted(bound)}")

    async def rows(self, conn: BaseDBAsyncClient, **bound: Any) -> Sequence[Any]:
        """Runs the statement and returns its rows (each readable by column name)."""
        sql, values = self._values(conn, bound)
        _, rows = await conn.execute_query(sql, values)
        return rows

    async def run(self, conn: BaseDBAsyncClient, **bound: Any) -> int:
        """Runs the statement and returns how many rows it changed."""
        sql, values = self._values(conn, bound)
        changed, _ = await conn.execute_query(sql, values)
        return int(changed)


def returning(query: QueryBuilder, *terms: Term) -> QueryBuilder:
    """`query` with `RETURNING terms` (the SQLite and PostgreSQL builders have it; pypika's base type does not)."""
    builder: Any = query
    return cast(QueryBuilder, builder.returning(*terms))


def upsert_statement(
    model: type[Model],
    fields: Sequence[str],
    conflict: Sequence[str] = ("id",),
    updates: Sequence[str] | None = None,
) -> Statement:
    """INSERT of `fields` (slots named after them) that, on a `conflict` clash, sets `updates`.

    `updates` defaults to every field outside the conflict target. It is never REPLACE, which
    deletes the row first and so would fire ON DELETE CASCADE on the row's children.
    """
    updated = [field for field in fields if field not in conflict] if updates is None else list(updates)

    def build(query: type[Query]) -> QueryBuilder:
        table = ModelTable(model)
        statement = (
            query.into(table.table)
            .columns(*table.columns(fields))
            .insert(*(slot(field) for field in fields))
            .on_conflict(*(table.column_name(field) for field in conflict))
        )
        for field in updated:
            statement = statement.do_update(table.column_name(field))
        return statement

    return Statement(build)


def rows_statement(
    model: type[Model], fields: Sequence[str], *, order: Sequence[str] = (), where: Sequence[str] = ()
) -> Statement:
    """The rows `model.filter(<where>=...).order_by(*order).values(*fields)` reads, as a Statement (the `where`
    fields are its slots): its SQL is built once per dialect, not on every call as a queryset's is.

    Only fields that Tortoise passes on as the driver returns them (text and integers; SQLite gives a
    BooleanField as 0 or 1, which `values()` turns into a bool).
    """
    kinds = {name: model._meta.fields_map[name].field_type for name in fields}
    if any(kind not in (str, int) for kind in kinds.values()):
        raise TypeError(f"rows_statement reads text and integer fields only, not {kinds}")

    def build(query: type[Query]) -> QueryBuilder:
        table = ModelTable(model)
        select = query.from_(table.table).select(*table.columns(fields))
        for name in where:
            select = select.where(table[name] == slot(name))
        return select.orderby(*(table[name] for name in order)) if order else select

    return Statement(build)


def locked_row_statement(model: type[Model], fields: Sequence[str], key: Sequence[str]) -> Statement:
    """SELECT of `fields` (each named as its field) of the row whose `key` fields equal the slots of their
    names, `FOR UPDATE`: the row stays locked until the transaction ends (PostgreSQL; SQLite has no FOR UPDATE)."""

    def build(query: type[Query]) -> QueryBuilder:
        table = ModelTable(model)
        statement = query.from_(table.table).select(*(table[field].as_(field) for field in fields))
        for field in key:
            statement = statement.where(table[field] == slot(field))
        return statement.for_update()

    return Statement(build)
