"""Where the migration files are found, and the errors when they are not there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daycare.storage.errors import StorageError
from daycare.storage.migrations import loader
from daycare.storage.migrations.loader import migrations_dir, migrations_load

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def uncached() -> Iterator[None]:
    loader.migrations_root.cache_clear()
    yield
    loader.migrations_root.cache_clear()


def test_a_checkout_reads_its_own_top_level_migrations_folder() -> None:
    # Code run from a source tree reads that tree's migrations/, where Aerich writes new files.
    assert migrations_dir() == (ROOT / "migrations" / "models").resolve()
    files = sorted((ROOT / "migrations" / "models").glob("[0-9]*_*.py"), key=lambda path: int(path.name.split("_")[0]))
    assert [migration.version for migration in migrations_load()] == [path.name for path in files]
    assert migrations_load()[0].version.startswith("0_")


def test_each_dialect_reads_its_own_chain() -> None:
    # PostgreSQL's chain is migrations/postgres/models/, where `aerich -c migrations/postgres/aerich.toml` writes.
    chain = (ROOT / "migrations" / "postgres" / "models").resolve()
    assert migrations_dir("postgres") == chain
    files = sorted(chain.glob("[0-9]*_*.py"), key=lambda path: int(path.name.split("_")[0]))
    loaded = migrations_load(dialect="postgres")
    assert [migration.version for migration in loaded] == [path.name for path in files]
    assert loaded[0].version.startswith("0_") and loaded[0].version.endswith("_baseline.py")
    assert {migration.version for migration in loaded}.isdisjoint(m.version for m in migrations_load())
    with pytest.raises(StorageError, match="No migrations for the dialect 'mysql'"):
        migrations_dir("mysql")


def test_a_missing_package_is_a_storage_error_that_says_to_reinstall(
    monkeypatch: pytest.MonkeyPatch, uncached: None
) -> None:
    monkeypatch.setattr(loader, "SOURCE_TREE", Path("/nonexistent"))  # as in an installed wheel
    monkeypatch.setattr(loader, "MIGRATIONS_PACKAGE", "daycare_no_such_migrations")
    with pytest.raises(StorageError, match="not installed: no daycare_no_such_migrations package") as raised:
        migrations_load()
    assert "pip install" in str(raised.value)


def test_outside_a_source_tree_the_installed_package_is_read(monkeypatch: pytest.MonkeyPatch, uncached: None) -> None:
    monkeypatch.setattr(loader, "SOURCE_TREE", Path("/nonexistent"))
    # The editable install maps the package to this checkout's folder; a wheel to site-packages.
    assert migrations_dir() == (ROOT / "migrations" / "models").resolve()


def test_a_missing_or_empty_folder_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="Migration folder not found"):
        migrations_load(tmp_path / "models")
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "notes.py").write_text("")
    with pytest.raises(StorageError, match=r"No migration files \(<n>_<name>.py\) in"):
        migrations_load(tmp_path)


def test_only_numbered_files_load_in_number_order_and_init_files_are_ignored(tmp_path: Path) -> None:
    body = "async def upgrade(db):\n    return ''\n\n\nMODELS_STATE = ''\n"
    for name in ("10_b.py", "2_a.py", "__init__.py", "x_1.py"):
        (tmp_path / name).write_text(body)
    assert [migration.version for migration in migrations_load(tmp_path)] == ["2_a.py", "10_b.py"]
