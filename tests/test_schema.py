"""daycare/schema.py: one model per legacy table, and composite keys that cannot leak across users."""

from __future__ import annotations

from typing import Any

import pytest
from tortoise.exceptions import IntegrityError
from tortoise.fields.relational import ForeignKeyFieldInstance

from daycare import schema
from daycare.schema import CompositeKeyError, Connection, Task, TokenStatsHourly
from daycare.storage.db.database import Database
from tests.conftest import legacy_dump


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
    rows = await db.connection().execute_query_dict('SELECT name, "notnull", pk FROM pragma_table_info(?)', [table])
    # SQLite lets a TEXT primary key hold NULL; the models (and the legacy code) never write one.
    return {row["name"]: not row["notnull"] and not row["pk"] for row in rows}


def test_every_legacy_table_has_exactly_one_model() -> None:
    tables = {model._meta.db_table for model in schema.__models__}
    dumped = set(legacy_dump("populated.json")["tables"]) - {"sqlite_sequence"}
    assert tables == dumped
    assert len(tables) == 21


@pytest.mark.parametrize("model", schema.__models__, ids=lambda m: m._meta.db_table)
async def test_model_columns_and_nullability_match_the_table(db: Database, model: type[schema.Model]) -> None:
    assert model_columns(model) == await table_columns(db, model._meta.db_table)


@pytest.mark.parametrize("model", schema.__models__, ids=lambda m: m._meta.db_table)
async def test_named_indexes_of_the_model_exist_in_the_table(db: Database, model: type[schema.Model]) -> None:
    rows = await db.connection().execute_query_dict("SELECT name FROM pragma_index_list(?)", [model._meta.db_table])
    actual = {row["name"] for row in rows}
    for index in model._meta.indexes:
        assert getattr(index, "name", None) in actual


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


async def test_the_same_task_id_under_two_users_is_two_rows(db: Database) -> None:
    conn = db.connection()
    common: dict[str, Any] = {"id": "shared", "code": "x", "created_at": 1, "updated_at": 1, "using_db": conn}
    await Task.create(user_id="alice", title="Alice's", **common)
    await Task.create(user_id="bob", title="Bob's", **common)
    with pytest.raises(IntegrityError, match="UNIQUE constraint failed: tasks.user_id, tasks.id"):
        await Task.create(user_id="bob", title="again", **common)
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
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        await Connection.create(user_a_id="a", user_b_id="b", using_db=conn)
    for user_id in ("a", "b"):
        await schema.User.create(id=user_id, nametag=f"tag{user_id}100", created_at=1, updated_at=1, using_db=conn)
    with pytest.raises(IntegrityError, match="CHECK constraint failed"):
        await Connection.create(user_a_id="b", user_b_id="a", using_db=conn)
    await Connection.create(user_a_id="a", user_b_id="b", using_db=conn)
    assert await Connection.filter(**Connection.key_filter(user_a_id="a", user_b_id="b")).using_db(conn).count() == 1


async def test_triggers_still_require_a_nametag(db: Database) -> None:
    with pytest.raises(IntegrityError, match="users.nametag is required"):
        await schema.User.create(id="nameless", nametag="  ", created_at=1, updated_at=1, using_db=db.connection())
