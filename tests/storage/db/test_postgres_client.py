"""The PostgreSQL client: RETURNING rows are kept, and a NUL in text is named, with nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from daycare.schema import User
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.postgres_backend import TextWithNul
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate


@pytest.fixture
async def postgres_db(postgres_url: str) -> AsyncIterator[Database]:
    db = await database_open(postgres_url)
    await database_migrate(db, backup=False)
    yield db
    await database_close(db)


async def test_writes_with_returning_give_their_rows(postgres_db: Database) -> None:
    conn = postgres_db.connection()
    await conn.execute_script("CREATE TABLE counted (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
    for sql in (
        "INSERT INTO counted VALUES ($1, 1) RETURNING id, n",
        "UPDATE counted SET n = n + 1 WHERE id = $1 RETURNING id, n",
        "DELETE FROM counted WHERE id = $1 RETURNING id, n",
    ):
        changed, rows = await conn.execute_query(sql, [7])
        assert changed == 1 and [tuple(row) for row in rows] in ([(7, 1)], [(7, 2)])
    assert await conn.execute_query("UPDATE counted SET n = 0") == (0, [])


async def test_text_with_a_nul_is_refused_by_name_and_nothing_is_written(postgres_db: Database) -> None:
    storage = Storage.from_database(postgres_db)
    before = await User.all().using_db(postgres_db.connection()).count()
    with pytest.raises(TextWithNul, match=r"NUL character \(\\x00\).*nothing was written"):
        await storage.users.create(name="a\x00b")
    with pytest.raises(TextWithNul):
        await User.create(id="u-nul", nametag="tag\x00", created_at=1, updated_at=1, using_db=postgres_db.connection())
    assert await User.all().using_db(postgres_db.connection()).count() == before
