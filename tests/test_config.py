"""config_load: --db, --settings, DAYCARE_DB_URL, ~/.daycare/settings.json, then the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daycare.config import config_load
from daycare.storage.errors import StorageError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_default_is_daycare_db_in_the_home_folder(home: Path) -> None:
    config = config_load(environ={})
    assert config.db_location == str(home / ".daycare" / "daycare.db")
    assert config.source == "default"


def test_default_settings_file_moves_the_database(home: Path, tmp_path: Path) -> None:
    (home / ".daycare").mkdir()
    (home / ".daycare" / "settings.json").write_text(json.dumps({"engine": {"dataDir": str(tmp_path / "d")}}))
    assert config_load(environ={}).db_location == str(tmp_path / "d" / "daycare.db")


def test_db_path_wins_over_data_dir(home: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"engine": {"dataDir": str(tmp_path / "d"), "dbPath": str(tmp_path / "x.db")}}))
    config = config_load(settings=settings, environ={})
    assert config.db_location == str(tmp_path / "x.db")
    assert config.data_dir == tmp_path / "d"


def test_order_is_flag_then_settings_flag_then_environment(home: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"engine": {"dbPath": str(tmp_path / "s.db")}}))
    environ = {"DAYCARE_DB_URL": "sqlite:///env.db"}
    assert config_load(db="flag.db", settings=settings, environ=environ).db_location == "flag.db"
    assert config_load(settings=settings, environ=environ).db_location == str(tmp_path / "s.db")
    assert config_load(environ=environ).db_location == "sqlite:///env.db"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"engine": {"dbPath": 42}}', "engine.dbPath must be a non-empty string"),
        ("[1, 2]", "does not hold a JSON object \\(it holds an array\\)"),
        ('"daycare.db"', "does not hold a JSON object \\(it holds a string\\)"),
        ("null", "does not hold a JSON object \\(it holds null\\)"),
        ("42", "does not hold a JSON object \\(it holds a number\\)"),
        ("", "is not valid JSON"),
        ('{"engine": []}', "engine must be an object, not an array"),
    ],
)
def test_bad_settings_are_explained(tmp_path: Path, content: str, message: str) -> None:
    settings = tmp_path / "s.json"
    settings.write_text(content)
    with pytest.raises(StorageError, match=message):
        config_load(settings=settings, environ={})


def test_bad_settings_name_the_file(tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text("[1, 2]")
    with pytest.raises(StorageError, match=f"Settings file {settings} does not hold a JSON object"):
        config_load(settings=settings, environ={})


def test_settings_that_are_not_utf8_are_explained(tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_bytes(b'{"engine": {"dbPath": "caf\xe9.db"}}')
    with pytest.raises(StorageError, match=r"is not UTF-8 text \(byte 0xe9 at offset 26\)"):
        config_load(settings=settings, environ={})


@pytest.mark.parametrize("db", ["", "   "])
def test_an_empty_db_flag_is_an_error_not_the_default(home: Path, db: str) -> None:
    with pytest.raises(StorageError, match="--db is empty"):
        config_load(db=db, environ={})


def test_settings_naming_no_database_use_the_default_and_say_so(home: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text('{"other": 1}')
    config = config_load(settings=settings, environ={})
    assert config.db_location == str(home / ".daycare" / "daycare.db")
    assert config.source == f"{settings}, which names no engine.dbPath or engine.dataDir"


def test_engine_settings_for_processes(home: Path, tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"engine": {"dataDir": str(tmp_path)}}))
    defaults = config_load(settings=settings)
    assert (defaults.sandbox, defaults.stop_processes) == ("bubblewrap", False)
    settings.write_text(json.dumps({"engine": {"dataDir": str(tmp_path), "sandbox": "none", "stopProcesses": True}}))
    chosen = config_load(settings=settings)
    assert (chosen.sandbox, chosen.stop_processes) == ("none", True)
    for engine, message in (
        ({"sandbox": "firejail"}, 'engine.sandbox is "firejail"; expected one of "bubblewrap", "none"'),
        ({"stopProcesses": "yes"}, "engine.stopProcesses must be true or false"),
    ):
        settings.write_text(json.dumps({"engine": engine}))
        with pytest.raises(StorageError, match=message):
            config_load(settings=settings)
