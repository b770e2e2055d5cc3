"""Lets one process run the same models on SQLite and PostgreSQL databases at once.

Tortoise keeps one base query per model, built for the dialect of the database initialised
last, and caches each model's INSERT and DELETE text by connection name and table only. Daycare
opens databases of both dialects in one process (`daycare db copy`, the test suite), so a
queryset on SQLite would otherwise be built as PostgreSQL SQL, or the reverse. `install()`
makes every queryset and executor rebind the model's base query to the dialect of the
connection it runs on, and keeps the executor caches apart per dialect.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pypika_tortoise.queries import Query, Table
from tortoise import queryset
from tortoise.backends.base import executor
from tortoise.models import Model

_builders: dict[type[Query], type[Any]] = {}  # query class -> the builder type it makes
_base_queries: dict[tuple[type[Model], type[Query]], tuple[Any, Any]] = {}
_executor_caches: dict[type[Query], dict[Any, Any]] = {}
_installed = False


def model_query_bind(model: type[Model], query_class: type[Query]) -> None:
    """Makes `model`'s base queries those of `query_class`'s dialect (cheap when they already are)."""
    builder = _builders.get(query_class)
    if builder is None:
        builder = _builders[query_class] = type(query_class.from_(Table("_")))
    meta: Any = model._meta  # Tortoise types the base queries as Query; they are builders
    if type(meta.basequery) is builder:
        return
    queries = _base_queries.get((model, query_class))
    if queries is None:
        base = query_class.from_(meta.basetable)
        queries = _base_queries[(model, query_class)] = (base, base.select(*meta.db_fields))
    meta.basequery, meta.basequery_all_fields = queries


def _bound_make_query(make_query: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(make_query)
    def bound(self: Any) -> None:
        if self._db is not None:
            model_query_bind(self.model, self._db.query_class)
        make_query(self)

    return bound


def _executor_init(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def bound(self: Any, model: type[Model], db: Any, *args: Any, **kwargs: Any) -> None:
        model_query_bind(model, db.query_class)
        shared = executor.EXECUTOR_CACHE
        executor.EXECUTOR_CACHE = _executor_caches.setdefault(db.query_class, {})
        try:  # __init__ reads the module's cache and never awaits, so the swap is seen by it alone
            init(self, model, db, *args, **kwargs)
        finally:
            executor.EXECUTOR_CACHE = shared

    return bound


def install() -> None:
    """Wraps Tortoise's query building once per process; idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    for value in vars(queryset).values():
        if isinstance(value, type) and "_make_query" in vars(value):
            query_class: Any = value
            query_class._make_query = _bound_make_query(vars(value)["_make_query"])
    executor.BaseExecutor.__init__ = _executor_init(executor.BaseExecutor.__init__)  # type: ignore[method-assign]
