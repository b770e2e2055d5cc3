"""One process, both dialects: the same models query SQLite and PostgreSQL in turn."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tortoise.models import MetaInfo, Model

from daycare import schema
from daycare.schema import User
from daycare.storage.db.database import database_close, database_open
from daycare.storage.migrations.migrate import database_migrate


async def test_querysets_and_inserts_follow_the_database_they_run_on(tmp_path: Path, postgres_url: str) -> None:
    # Tortoise builds each model's base query and INSERT text for the dialect initialised last;
    # without the rebinding, the SQLite queries below would be sent as PostgreSQL SQL or the reverse.
    sqlite_db = await database_open(tmp_path / "daycare.db")
    postgres_db = await database_open(postgres_url)
    try:
        for db in (sqlite_db, postgres_db):
            await database_migrate(db, backup=False)
        for round_ in range(2):
            for db in (sqlite_db, postgres_db, sqlite_db):
                conn = db.connection()
                user_id = f"{db.dialect}-{round_}-{len(await User.all().using_db(conn))}"
                await User.create(id=user_id, nametag=user_id, created_at=1, updated_at=1, using_db=conn)
                await User.filter(id=user_id).using_db(conn).update(name="renamed")
                assert await User.filter(id=user_id, name="renamed").using_db(conn).count() == 1
                assert await User.filter(is_owner=True).using_db(conn).order_by("id").count() == 1
                assert await User.filter(id=user_id).using_db(conn).values_list("nametag", flat=True) == [user_id]
        for db, expected in ((sqlite_db, 5), (postgres_db, 3)):  # the owner, then 4 and 2 users
            assert await User.all().using_db(db.connection()).count() == expected
            await User.filter(is_owner=False).using_db(db.connection()).delete()
            assert await User.all().using_db(db.connection()).count() == 1
    finally:
        await database_close(sqlite_db)
        await database_close(postgres_db)


def comparable(filters: dict[str, Any]) -> dict[str, Any]:
    """Filters with each operator made by functools.partial (a new object per call) compared by what it calls."""

    def operator(value: Any) -> Any:
        return (value.func, value.args, value.keywords) if isinstance(value, functools.partial) else value

    return {key: {**info, "operator": operator(info["operator"])} for key, info in filters.items()}


async def test_each_models_filters_are_those_tortoise_makes_for_the_dialect(postgres_url: str) -> None:
    # Made once per model and dialect (tortoise_dialects._filters_reuse), not at every open: an open of
    # the other dialect in between must not leave its filters (PostgreSQL overrides some operators) behind.
    models = [value for value in vars(schema).values() if isinstance(value, type) and issubclass(value, Model)]
    generate = MetaInfo._generate_filters.__wrapped__  # type: ignore[attr-defined]
    overridden = 0
    for location in (":memory:", postgres_url, ":memory:", postgres_url):
        db = await database_open(location)
        try:
            with db.context:
                for model in models:
                    if model._meta.abstract:
                        continue
                    reused = dict(model._meta.filters)
                    model._meta.filters = {}
                    generate(model._meta)
                    assert comparable(model._meta.filters) == comparable(reused), (location, model)
                    overridden += sum(made is not model._meta._filters[key] for key, made in reused.items())
        finally:
            await database_close(db)
    assert overridden > 0  # PostgreSQL's executor overrides some operators: the dialects differ
