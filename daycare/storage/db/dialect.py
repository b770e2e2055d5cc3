"""Picks the dialect module (`daycare.storage.db.sqlite`, ...) for the query class a statement is built with."""

from __future__ import annotations

from pypika_tortoise.dialects import SQLLiteQuery
from pypika_tortoise.queries import Query, Table
from pypika_tortoise.terms import Term

from daycare.storage.db import sqlite


def insertion_order(query: type[Query], table: Table) -> Term:
    """A term that orders `table`'s rows as they were inserted, in the dialect of `query`."""
    if issubclass(query, SQLLiteQuery):
        return sqlite.insertion_order(table)
    raise NotImplementedError(f"no insertion order for {query.__name__}")
