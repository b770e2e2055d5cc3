"""Lets one process run the same models on SQLite and PostgreSQL databases at once.

Tortoise keeps one base query per model, built for the dialect of the database initialised
last, and caches each model's INSERT and DELETE text by connection name and table only. Daycare
opens databases of both dialects in one process (`daycare db copy`, the test suite), so a
queryset on SQLite would otherwise be built as PostgreSQL SQL, or the reverse. `install()`
makes every queryset and executor rebind the model's base query to the dialect of the
connection it runs on, and keeps the executor caches apart per dialect. It also makes each
model's filters once per dialect rather than at every open.

Also here, as the other change Daycare makes to Tortoise: `model_comments_scan_skip()`, which
spares Tortoise a parse of a model's whole module per model class when that module holds no
`#:` field comments (it is what made importing `daycare.schema` slow).
"""

from __future__ import annotations

import functools
import inspect
import linecache
import sys
from collections.abc import Callable
from typing import Any

from pypika_tortoise.queries import Query, Table
from tortoise import models as tortoise_models
from tortoise import queryset
from tortoise.backends.base import executor
from tortoise.models import MetaInfo, Model

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


# (model, executor class) -> the filters Tortoise made for them, and the `_filters` it made them from.
_filters_made: dict[tuple[type[Model], type[Any]], tuple[dict[str, Any], dict[str, Any]]] = {}


def _filters_reuse(generate: Callable[[MetaInfo], None]) -> Callable[[MetaInfo], None]:
    """Tortoise makes every model's filters again at each open (about 2 ms for Daycare's models, most of an
    open); they depend only on the model's `_filters` and the dialect's executor, so each is made once."""

    @functools.wraps(generate)
    def reused(meta: MetaInfo) -> None:
        key = (meta._model, meta.db.executor_class)
        made = _filters_made.get(key)
        if made is not None and made[0] == meta._filters:
            meta.filters.update(made[1])
            return
        generate(meta)
        _filters_made[key] = (dict(meta._filters), dict(meta.filters))

    return reused


def install() -> None:
    """Wraps Tortoise's query building and model filters once per process; idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    MetaInfo._generate_filters = _filters_reuse(MetaInfo._generate_filters)  # type: ignore[method-assign,assignment]
    for value in vars(queryset).values():
        if isinstance(value, type) and "_make_query" in vars(value):
            query_class: Any = value
            query_class._make_query = _bound_make_query(vars(value)["_make_query"])
    executor.BaseExecutor.__init__ = _executor_init(executor.BaseExecutor.__init__)  # type: ignore[method-assign]


# Per source file: the lines linecache gave for it, and whether they hold a `#:` (a module's classes share them).
_comment_scans: dict[str, tuple[list[str], bool]] = {}


def _module_has_field_comments(model: type[Model]) -> bool:
    """Whether the source file of `model`'s module holds a `#:` anywhere; True when it cannot be read."""
    try:
        path = inspect.getsourcefile(model)
    except TypeError:
        return True
    if path is None:
        return True
    module = sys.modules.get(model.__module__)
    linecache.checkcache(path)  # as inspect.getsource does, so both read the same text
    lines = linecache.getlines(path, module.__dict__ if module is not None else None)
    scanned = _comment_scans.get(path)
    if scanned is None or scanned[0] is not lines:  # linecache keeps one list per file until the file changes
        scanned = _comment_scans[path] = (lines, not lines or any("#:" in line for line in lines))
    return scanned[1]


def model_comments_scan_skip() -> None:
    """Makes Tortoise skip its search for `#:` field comments in a model class whose module has none; idempotent.

    For each model class it creates, Tortoise calls `inspect.getsource(cls)`, which parses the
    whole module, and keeps the `#:` comment lines it finds before each field as the field's
    description. A module without `#:` gives every class no comments; this answers that without
    the parse (about 90 ms for `daycare.schema`). A module with `#:` is read by Tortoise as before.
    """
    original = tortoise_models._get_comments
    if getattr(original, "_skips_modules_without_comments", False):
        return

    @functools.wraps(original)
    def comments(cls: type[Model]) -> dict[str, str]:
        if not _module_has_field_comments(cls):
            return {}
        result: dict[str, str] = original(cls)
        return result

    comments._skips_modules_without_comments = True  # type: ignore[attr-defined]
    tortoise_models._get_comments = comments
