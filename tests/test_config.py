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


PG_URL = "postgres://daycare:secret@db.example:5432/daycare?schema=team_a"


@pytest.mark.parametrize("url", [PG_URL, "postgresql://daycare@db.example/daycare"])
def test_a_postgres_url_works_as_flag_and_environment_with_the_home_as_data_folder(home: Path, url: str) -> None:
    for config in (config_load(db=url, environ={}), config_load(environ={"DAYCARE_DB_URL": url})):
        assert config.db_location == url
        assert config.data_dir == home / ".daycare"  # a server has no folder: users' files go to the Daycare home


def test_daycare_home_moves_the_default_database_settings_and_data_folder(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    config = config_load(environ={"DAYCARE_HOME": str(elsewhere)})
    assert (config.db_location, config.data_dir) == (str(elsewhere / "daycare.db"), elsewhere)
    assert config_load(db=PG_URL, environ={"DAYCARE_HOME": str(elsewhere)}).data_dir == elsewhere
    elsewhere.mkdir()
    (elsewhere / "settings.json").write_text(json.dumps({"engine": {"db": {"url": PG_URL}}}))
    from_settings = config_load(environ={"DAYCARE_HOME": str(elsewhere)})
    assert (from_settings.db_location, from_settings.data_dir) == (PG_URL, elsewhere)
    assert from_settings.source == f"{elsewhere / 'settings.json'}, engine.db.url"
    assert config_load(environ={}).db_location == str(home / ".daycare" / "daycare.db")  # unset: ~/.daycare


def test_settings_db_url_wins_over_db_path_and_says_so(home: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    engine = {"dataDir": str(tmp_path / "d"), "dbPath": str(tmp_path / "x.db"), "db": {"url": PG_URL}}
    settings.write_text(json.dumps({"engine": engine}))
    config = config_load(settings=settings, environ={})
    assert config.db_location == PG_URL
    assert config.data_dir == tmp_path / "d"  # engine.dataDir still places the users' files
    assert config.source == f"{settings}, engine.db.url; engine.dbPath {tmp_path / 'x.db'} is ignored"


def test_settings_db_url_may_name_a_file_relative_to_the_working_directory(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"engine": {"db": {"url": "data/daycare.db"}}}))
    assert config_load(settings=settings, environ={}).db_location == str(tmp_path / "data" / "daycare.db")
    settings.write_text(json.dumps({"engine": {"db": {"url": "sqlite:///srv/daycare.db"}}}))
    assert config_load(settings=settings, environ={}).db_location == "sqlite:///srv/daycare.db"


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"db": "postgres://x/y"}, "engine.db must be an object, not a string"),
        ({"db": {"url": 42}}, "engine.db.url must be a non-empty string"),
        ({"db": {"url": "  "}}, "engine.db.url must be a non-empty string"),
        ({"db": {"url": "mysql://db/daycare"}}, "engine.db.url: Unsupported database URL scheme 'mysql'"),
        ({"db": {"url": "postgres://db.example"}}, "engine.db.url: The PostgreSQL URL .* names no database"),
        ({"db": {"url": "postgres://db/daycare?schema=1bad"}}, r"engine.db.url: Invalid schema='1bad'"),
    ],
)
def test_a_bad_settings_db_url_is_explained(tmp_path: Path, engine: dict[str, object], message: str) -> None:
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"engine": engine}))
    with pytest.raises(StorageError, match=f"Settings file {settings}: {message}"):
        config_load(settings=settings, environ={})


def test_settings_db_without_url_keeps_the_file(home: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"engine": {"dbPath": str(tmp_path / "x.db"), "db": {}}}))
    config = config_load(settings=settings, environ={})
    assert (config.db_location, config.source) == (str(tmp_path / "x.db"), str(settings))
