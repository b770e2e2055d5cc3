"""Engine: opens and migrates one database in start(), closes it in stop()."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from daycare.config import Config
from daycare.engine import Engine
from daycare.storage.errors import DatabaseRefused
from tests.sqlite_files import file_query, file_sha256


def engine_config(path: Path) -> Config:
    return Config(str(path), path.parent, "test")


async def test_start_migrates_and_stop_closes(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    async with Engine(engine_config(path)) as engine:
        owner = await engine.storage.db.connection().execute_query_dict("SELECT count(*) AS n FROM users")
        assert owner == [{"n": 1}]
    with pytest.raises(RuntimeError, match="not started"):
        _ = engine.storage
    assert file_query(path, "SELECT count(*) FROM aerich") == [(1,)]


async def test_a_second_engine_on_the_same_file_only_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    async with Engine(engine_config(path)):
        pass
    sha = file_sha256(path)
    async with Engine(engine_config(path)):
        pass
    assert file_sha256(path) == sha
    assert not list(tmp_path.glob("*.bak-*"))


async def test_a_refused_file_fails_start_and_leaves_nothing_open(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    connection = sqlite3.connect(path)
    connection.execute("DROP INDEX idx_users_nametag")
    connection.commit()
    connection.close()
    sha = file_sha256(path)
    engine = Engine(engine_config(path))
    with pytest.raises(DatabaseRefused):
        await engine.start()
    assert file_sha256(path) == sha
    with pytest.raises(RuntimeError):
        _ = engine.storage
    await engine.stop()  # stopping an engine that never started is harmless
