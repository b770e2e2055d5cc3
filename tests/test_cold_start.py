"""What a command loads and what an engine start reads: the changes behind a quick cold start.

Timings are in bench/cold_start.py; these tests check behaviour only: which modules a command
imports (in a fresh subprocess), that outputs are unchanged, and that the shortcuts give the
results of the long ways they replace.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tortoise.backends.base.client import BaseDBAsyncClient

import daycare.storage
from daycare.storage.db.database import database_close, database_open
from daycare.storage.migrations.baseline_v1 import schema_tolerant_compare
from daycare.storage.migrations.catalog import TableIssues, catalog_texts, schema_describe
from daycare.storage.migrations.migrate import database_status
from daycare.storage.migrations.schema_check import schema_drift, schema_expected
from tests.storage.migrations.migrated import VERSIONS

ROOT = Path(__file__).resolve().parents[1]
# Modules no command needs unless it uses them: the PostgreSQL driver, the engine's schedulers and
# proxy, Aerich (only to record a migration) and the 33 legacy steps (only for a legacy file that lacks some).
HEAVY = ("aerich", "asyncpg", "croniter", "aiohttp", "daycare.engine", "daycare.storage.migrations.legacy.chain")
STORAGE_STACK = ("tortoise", "pypika_tortoise", "daycare.schema", "daycare.storage.db", "daycare.storage.migrations")


def loaded(module: str, modules: list[str]) -> bool:
    return any(name == module or name.startswith(module + ".") for name in modules)


def python_run(
    code: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter, without DAYCARE_DB_URL and DAYCARE_HOME, plus `env`."""
    environment = {key: value for key, value in os.environ.items() if key not in ("DAYCARE_DB_URL", "DAYCARE_HOME")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=120,
    )


# Runs the command line in-process on sys.argv[1:], then prints the modules it loaded as the last line of stderr.
COMMAND_MODULES = """
    import json, sys
    from daycare.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
    sys.exit(code)
"""


def command_run(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`daycare ARGS` in a fresh process: its result (stderr without the module list) and the modules it loaded."""
    result = python_run(COMMAND_MODULES, *args)
    *lines, modules = result.stderr.splitlines()
    result.stderr = "\n".join(lines)
    return result, json.loads(modules)


def up_to_date_file(folder: Path) -> Path:
    path = folder / "daycare.db"
    upgrade, _ = command_run("upgrade", "--db", str(path), "--no-backup")
    assert upgrade.returncode == 0, upgrade.stderr
    return path


def test_importing_the_command_line_loads_no_storage_stack() -> None:
    result = python_run("import json, sys, daycare.cli; print(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert [name for name in (*STORAGE_STACK, *HEAVY) if loaded(name, modules)] == []


def test_help_is_the_parsers_and_loads_no_storage_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    from daycare.cli import EXIT_CODES, parser_build

    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width: the same on both sides
    result, modules = command_run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout == parser_build().format_help()
    assert result.stdout.startswith("usage: daycare [-h] [--version] COMMAND ...")
    assert EXIT_CODES in result.stdout
    assert [name for name in (*STORAGE_STACK, *HEAVY) if loaded(name, modules)] == []


def test_version_is_the_installed_one_and_loads_no_storage_stack() -> None:
    result, modules = command_run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"daycare {importlib.metadata.version('daycare')}\n"
    assert not loaded("tortoise", modules)


def test_wrong_arguments_exit_2_before_loading_the_storage_stack() -> None:
    result, modules = command_run("db", "stat")
    assert result.returncode == 2
    assert "invalid choice: 'stat'" in result.stderr
    assert not loaded("tortoise", modules)


def test_status_of_an_up_to_date_file_is_unchanged_and_loads_neither_aerich_nor_the_engine(tmp_path: Path) -> None:
    path = up_to_date_file(tmp_path)
    result, modules = command_run("db", "status", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Database: {path} (from --db)",
        "State:    under Aerich",
        f"Applied:  {', '.join(VERSIONS)}",
        "Pending:  none",
    ]
    assert [name for name in HEAVY if loaded(name, modules)] == []


def test_check_of_an_up_to_date_file_matches_and_loads_no_aerich(tmp_path: Path) -> None:
    path = up_to_date_file(tmp_path)
    result, modules = command_run("db", "check", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: the schema matches the migrations it records.\n"
    assert not loaded("aerich", modules)


def test_an_upgrade_that_applies_migrations_still_records_them_as_aerich_does(tmp_path: Path) -> None:
    path = up_to_date_file(tmp_path)
    rows = sqlite3.connect(path).execute("SELECT version, app, content FROM aerich ORDER BY id").fetchall()
    assert [(version, app) for version, app, _ in rows] == [(version, "models") for version in VERSIONS]
    assert all(json.loads(content) for _, _, content in rows)  # Aerich's models state, as its own field writes it


ENGINE_START = """
    import asyncio, json, sys
    from daycare.config import config_load
    from daycare.engine import Engine

    async def main():
        engine = Engine(config_load(db=sys.argv[1]), backup=False)
        await engine.start()
        await engine.stop()

    asyncio.run(main())
    print(json.dumps(sorted(sys.modules)))
"""


def test_an_engine_start_on_an_up_to_date_file_loads_no_aerich_nor_the_legacy_steps(tmp_path: Path) -> None:
    path = up_to_date_file(tmp_path)
    result = python_run(ENGINE_START, str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert not loaded("aerich", modules)
    assert not loaded("daycare.storage.migrations.legacy.chain", modules)


# --- Tortoise's search for field comments ------------------------------------------------------

MODEL_DESCRIPTIONS = """
    import json, sys
    from daycare.storage.db import tortoise_dialects
    if sys.argv[1] == "without":  # daycare.schema calls it when it is imported: make it do nothing
        tortoise_dialects.model_comments_scan_skip = lambda: None
    import tortoise.models
    from daycare import schema
    skipped = getattr(tortoise.models._get_comments, "_skips_modules_without_comments", False)
    models = {name: model for name, model in vars(schema).items() if isinstance(model, type)
              and issubclass(model, tortoise.models.Model) and model.__module__ == schema.__name__}
    described = {name: {field: [value.description, value.docstring] for field, value in model._meta.fields_map.items()}
                 for name, model in models.items()}
    tables = {name: model._meta.table_description for name, model in models.items()}
    print(json.dumps({"skipped": skipped, "fields": described, "tables": tables}, sort_keys=True))
"""


def test_models_are_described_the_same_with_and_without_the_skipped_comment_search() -> None:
    found = {}
    for mode in ("with", "without"):
        result = python_run(MODEL_DESCRIPTIONS, mode)
        assert result.returncode == 0, result.stderr
        found[mode] = json.loads(result.stdout)
    assert found["with"]["skipped"] is True and found["without"]["skipped"] is False
    assert found["with"]["fields"] == found["without"]["fields"]
    assert found["with"]["tables"] == found["without"]["tables"]
    assert len(found["with"]["fields"]) >= 20
    assert "#:" not in (ROOT / "daycare" / "schema.py").read_text()  # what makes the search skippable


COMMENTED_MODEL = """
    from tortoise import fields
    from tortoise.models import Model


    class Pet(Model):
        \"\"\"A pet.\"\"\"

        #: The pet's name
        #: as its owner calls it.
        name = fields.TextField()
        age = fields.IntField()  # a private comment, not a description
"""


def test_a_module_with_field_comments_still_gets_them(tmp_path: Path) -> None:
    (tmp_path / "pets.py").write_text(textwrap.dedent(COMMENTED_MODEL))
    code = """
        import json, sys
        sys.path.insert(0, sys.argv[1])
        from daycare.storage.db.tortoise_dialects import model_comments_scan_skip
        model_comments_scan_skip()
        model_comments_scan_skip()  # idempotent: wrapped once
        import tortoise.models
        from pets import Pet
        fields = Pet._meta.fields_map
        wrapped = tortoise.models._get_comments.__wrapped__
        print(json.dumps([fields["name"].description, fields["name"].docstring, fields["age"].description,
                          getattr(wrapped, "_skips_modules_without_comments", False)]))
    """
    result = python_run(code, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["The pet's name", "The pet's name\nas its owner calls it.", None, False]


# --- the public names of daycare.storage, imported on first use --------------------------------


def test_storage_exports_match_the_type_checking_imports_and_resolve() -> None:
    source = Path(daycare.storage.__file__).read_text()
    checked: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module is not None
                checked.update({alias.name: statement.module for alias in statement.names})
    exports = vars(daycare.storage)["_EXPORTS"]
    assert checked == exports
    assert sorted(daycare.storage.__all__) == sorted(exports)
    for name, module in exports.items():
        assert getattr(daycare.storage, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'storage_close'"):
        daycare.storage.storage_close  # noqa: B018


# --- the schema check describes only the tables whose catalog text differs ---------------------

DRIFTS = {
    "column added": "ALTER TABLE users ADD COLUMN extra TEXT",
    "index added": "CREATE INDEX idx_users_name ON users(name)",
    "index dropped": "DROP INDEX idx_signals_delayed_repeat",
    "trigger dropped": "DROP TRIGGER trg_users_nametag_required_insert",
    "table added": "CREATE TABLE strangers (id INTEGER PRIMARY KEY)",
    "table dropped": "DROP TABLE token_stats_hourly",
    "column renamed": "ALTER TABLE users RENAME COLUMN name TO full_name",
    "column added where the owner id differs": "ALTER TABLE agents ADD COLUMN extra TEXT",
}


@pytest.fixture(scope="module")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return up_to_date_file(tmp_path_factory.mktemp("migrated"))


async def full_comparison(conn: BaseDBAsyncClient) -> list[TableIssues]:
    """What the check found before it described only the differing tables: every table, both sides."""
    return schema_tolerant_compare(await schema_expected(VERSIONS), await schema_describe(conn), frozenset())


@pytest.mark.parametrize("drift", [None, *DRIFTS])
async def test_the_drift_found_is_the_full_comparisons(migrated_file: Path, tmp_path: Path, drift: str | None) -> None:
    path = tmp_path / "daycare.db"
    shutil.copyfile(migrated_file, path)
    path.chmod(0o600)  # SQLite gives -wal and -shm the file's mode; Daycare warns about readable ones
    if drift is not None:
        connection = sqlite3.connect(path)
        connection.execute(DRIFTS[drift])
        connection.commit()
        connection.close()
    db = await database_open(path, read_only=True)
    try:
        found = await schema_drift(db.connection(), VERSIONS, frozenset())
        assert found == await full_comparison(db.connection())
        assert bool(found) == (drift is not None)
        status = await database_status(db)
        assert status.state.versions == VERSIONS
    finally:
        await database_close(db)


async def test_an_up_to_date_file_differs_in_catalog_text_only_where_the_owner_id_is(migrated_file: Path) -> None:
    db = await database_open(migrated_file, read_only=True)
    try:
        texts = await catalog_texts(db.connection())
        actual = await schema_describe(db.connection())
        assert texts is not None and texts.keys() == actual.keys()
        assert await schema_describe(db.connection(), only={"users", "agents"}) == {
            "users": actual["users"],
            "agents": actual["agents"],
        }
    finally:
        await database_close(db)
    expected = await schema_expected(VERSIONS)
    assert expected.keys() == actual.keys()
    # The owner id in the DEFAULT of agents.user_id differs in every file: the one table described on both sides.
    assert sorted(name for name in expected if expected[name] != actual[name]) == ["agents"]
