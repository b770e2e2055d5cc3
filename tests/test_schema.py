"""daycare/schema.py: one model per legacy table, and composite keys that cannot leak across users.

Each database test runs on SQLite and on PostgreSQL (the `db` fixture), and reads the tables
through the dialect's own catalog functions (`sqlite.py` / `postgres.py`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError
from tortoise.fields.relational import ForeignKeyFieldInstance

from daycare import schema
from daycare.schema import CompositeKeyError, Connection, Task, TokenStatsHourly
from daycare.storage.db import postgres, sqlite
from daycare.storage.db.database import Database
from daycare.storage.db.dialect import unique_violation_targets
from daycare.storage.db.location import POSTGRES
from tests.conftest import legacy_dump

# What each database says when a constraint refuses a row (SQLite's nametag rule is a trigger, PostgreSQL's a CHECK).
REFUSALS = {
    "sqlite": {
        "foreign key": "FOREIGN KEY constraint failed",
        "connections": "CHECK constraint failed: user_a_id < user_b_id",
        "nametag": "users.nametag is required",
    },
    "postgres": {
        "foreign key": 'violates foreign key constraint "connections_user_a_id_fkey"',
        "connections": 'violates check constraint "connections_users_ordered"',
        "nametag": 'violates check constraint "users_nametag_required"',
    },
}


def catalog(db: Database) -> ModuleType:
    """The catalog functions of the database's dialect."""
    return postgres if db.dialect == POSTGRES else sqlite


def model_columns(model: type[schema.Model]) -> dict[str, bool]:
    """`column -> nullable` as the model declares it."""
    columns = {}
    for name, field in model._meta.fields_map.items():
        if isinstance(field, ForeignKeyFieldInstance):
            continue  # its `<name>_id` field carries the column
        if field.has_db_field:
            columns[field.source_field or name] = bool(field.null)
    return columns


async def table_columns(db: Database, table: str) -> dict[str, bool]:
    """`column -> nullable` as the table has it; a key column counts as not nullable.

    SQLite lets a TEXT primary key hold NULL; the models (and the legacy code) never write one.
    PostgreSQL's signals_events.insertion_order (SQLite's rowid) is no model field, and is left out.
    """
    columns = await catalog(db).table_columns(db.connection(), table)
    return {
        column.name: not column.notnull and not column.pk
        for column in columns
        if not (db.dialect == POSTGRES and column.name == postgres.INSERTION_ORDER)
    }


# Tables of Daycare's own, not of the legacy schema: claims of scheduled runs (several engines on PostgreSQL).
DAYCARE_TABLES = {"trigger_runs"}


def test_every_legacy_table_has_exactly_one_model() -> None:
    tables = {model._meta.db_table for model in schema.__models__}
    dumped = set(legacy_dump("populated.json")["tables"]) - {"sqlite_sequence"}
    assert tables == dumped | DAYCARE_TABLES
    assert len(tables) == 22


@pytest.mark.parametrize("model", schema.__models__, ids=lambda m: m._meta.db_table)
async def test_model_columns_and_nullability_match_the_table(db: Database, model: type[schema.Model]) -> None:
    expected = model_columns(model)
    assert expected and expected == await table_columns(db, model._meta.db_table)


@pytest.mark.parametrize("model", schema.__models__, ids=lambda m: m._meta.db_table)
async def test_named_indexes_of_the_model_exist_in_the_table(db: Database, model: type[schema.Model]) -> None:
    found = {
        index.name: index.columns for index in await catalog(db).table_indexes(db.connection(), model._meta.db_table)
    }
    for index in model._meta.indexes:
        columns = tuple(model._meta.fields_db_projection.get(name, name) for name in index.fields)
        # The table's index starts with the model's columns (PostgreSQL's idx_signals_events_created then names
        # insertion_order, which SQLite's index entries carry as their rowid).
        assert found[index.name][: len(columns)] == columns, index.name
        assert len(found[index.name]) == len(columns) or found[index.name][len(columns) :] == (
            postgres.INSERTION_ORDER,
        )


async def test_task_instances_cannot_be_saved_or_deleted(db: Database) -> None:
    conn = db.connection()
    task = await Task.create(id="t1", user_id="alice", title="A", code="x", created_at=1, updated_at=1, using_db=conn)
    task.title = "changed"
    with pytest.raises(CompositeKeyError, match="composite key"):
        await task.save(using_db=conn)
    with pytest.raises(CompositeKeyError):
        await task.delete(using_db=conn)
    with pytest.raises(CompositeKeyError):
        await Task.bulk_update([task], fields=["title"], using_db=conn)
    titles = await Task.filter(id="t1").using_db(conn).values_list("title", flat=True)
    assert titles == ["A"]


async def test_the_same_task_id_under_two_users_is_two_rows(db: Database) -> None:
    conn = db.connection()
    common: dict[str, Any] = {"id": "shared", "code": "x", "created_at": 1, "updated_at": 1, "using_db": conn}
    await Task.create(user_id="alice", title="Alice's", **common)
    await Task.create(user_id="bob", title="Bob's", **common)
    with pytest.raises(IntegrityError) as refused:
        await Task.create(user_id="bob", title="again", **common)
    assert unique_violation_targets(refused.value) == {"tasks.user_id", "tasks.id"}
    updated = await Task.filter(**Task.key_filter(user_id="bob", id="shared")).using_db(conn).update(title="Bob v2")
    assert updated == 1
    titles = await Task.filter(id="shared").using_db(conn).order_by("user_id").values_list("title", flat=True)
    assert titles == ["Alice's", "Bob v2"]


def test_a_partial_key_is_refused() -> None:
    with pytest.raises(CompositeKeyError, match=r"\('user_id', 'id'\)"):
        Task.key_filter(id="shared")
    with pytest.raises(CompositeKeyError):
        TokenStatsHourly.key_filter(hour_start=0, user_id="u", agent_id="a")


async def test_connections_keep_their_check_and_foreign_keys(db: Database) -> None:
    conn = db.connection()
    refusals = REFUSALS[db.dialect]
    with pytest.raises(IntegrityError, match=refusals["foreign key"]):
        await Connection.create(user_a_id="a", user_b_id="b", using_db=conn)
    for user_id in ("a", "b"):
        await schema.User.create(id=user_id, nametag=f"tag{user_id}100", created_at=1, updated_at=1, using_db=conn)
    with pytest.raises(IntegrityError, match=refusals["connections"]):
        await Connection.create(user_a_id="b", user_b_id="a", using_db=conn)
    await Connection.create(user_a_id="a", user_b_id="b", using_db=conn)
    assert await Connection.filter(**Connection.key_filter(user_a_id="a", user_b_id="b")).using_db(conn).count() == 1


@pytest.mark.parametrize("nametag", [None, "", "  "], ids=["null", "empty", "blank"])
async def test_the_nametag_rule_holds(db: Database, nametag: str | None) -> None:
    """No user without a nametag, on insert or on update: SQLite's triggers, PostgreSQL's CHECK."""
    conn = db.connection()
    refusal = REFUSALS[db.dialect]["nametag"]
    with pytest.raises(IntegrityError, match=refusal):
        await schema.User.create(id="nameless", nametag=nametag, created_at=1, updated_at=1, using_db=conn)
    await schema.User.create(id="named", nametag="calmotter100", created_at=1, updated_at=1, using_db=conn)
    with pytest.raises(IntegrityError, match=refusal):
        await schema.User.filter(id="named").using_db(conn).update(nametag=nametag)
    nametags = await schema.User.filter(id__in=["nameless", "named"]).using_db(conn).values_list("nametag", flat=True)
    assert nametags == ["calmotter100"]
