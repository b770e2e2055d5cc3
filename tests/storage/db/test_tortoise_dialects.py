"""One process, both dialects: the same models query SQLite and PostgreSQL in turn."""

from __future__ import annotations

from pathlib import Path

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
