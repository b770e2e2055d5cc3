"""`aerich upgrade` (the real CLI) brings a partial legacy file to the same state as `database_migrate`.

Under Aerich the legacy steps run inside the baseline's transaction, each in a savepoint;
under `database_migrate` each step commits on its own. The result must not differ.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daycare.storage.db.database import database_close, database_open
from daycare.storage.migrations.migrate import database_migrate
from tests.conftest import ROOT, legacy_dump
from tests.sqlite_files import file_master, file_query
from tests.storage.migrations.legacy.helpers import tables_dump
from tests.storage.migrations.migrated import VERSIONS, migrated_schema_sql

NAME = "at_20260222_add_processes__cron_without_task"


def canonical(dump: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The dump with generated values (new nametags, clock times, cuid2 task ids) replaced by markers."""
    before = legacy_dump(f"{NAME}.json")["tables"]
    recorded = {row["name"] for row in before["_migrations"]["rows"]}
    known_tasks = {row["task_uid"] for row in before["tasks_cron"]["rows"]}
    generated = {task["id"] for task in dump["tasks"] if task["id"] not in known_tasks}

    def mark(value: Any) -> Any:
        return "<task>" if value in generated else value

    out = dict(dump)
    out["users"] = [{**user, "nametag": "<nametag>"} for user in dump["users"]]
    out["_migrations"] = [
        row if row["name"] in recorded else {**row, "applied_at": "<clock>"} for row in dump["_migrations"]
    ]
    out["tasks"] = sorted(({**task, "id": mark(task["id"])} for task in dump["tasks"]), key=lambda task: task["title"])
    out["tasks_heartbeat"] = [{**row, "task_id": mark(row["task_id"])} for row in dump["tasks_heartbeat"]]
    return out


def aerich_versions(path: Path) -> list[str]:
    return [row[0] for row in file_query(path, "SELECT version FROM aerich ORDER BY id")]


async def test_aerich_upgrade_equals_database_migrate(legacy_copy: Callable[[str], Path], tmp_path: Path) -> None:
    by_daycare = legacy_copy(f"{NAME}.db")
    by_aerich = tmp_path / "aerich" / "daycare.db"
    by_aerich.parent.mkdir()
    shutil.copyfile(by_daycare, by_aerich)

    db = await database_open(by_daycare)
    try:
        await database_migrate(db, backup=False)
    finally:
        await database_close(db)
    aerich = Path(sys.executable).with_name("aerich")
    result = subprocess.run(
        [str(aerich), "upgrade"],
        cwd=ROOT,
        env={**os.environ, "DAYCARE_DB_URL": str(by_aerich)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert all(version in result.stdout for version in VERSIONS)
    assert file_master(by_aerich) == file_master(by_daycare) == migrated_schema_sql()
    assert aerich_versions(by_aerich) == aerich_versions(by_daycare) == list(VERSIONS)
    assert canonical(tables_dump(by_aerich)) == canonical(tables_dump(by_daycare))
    # Afterwards either runner finds nothing to do.
    db = await database_open(by_aerich)
    try:
        assert await database_migrate(db) == []
    finally:
        await database_close(db)
