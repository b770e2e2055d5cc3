"""Finds the database the way every entry point does: flag, environment, settings, default.

Order: an explicit `--db`; an explicit `--settings` file; `DAYCARE_DB_URL` (a path, a `sqlite://`
or a `postgres://` URL); `<home>/settings.json` when it exists; `<home>/daycare.db`. The Daycare
home is `DAYCARE_HOME` when set, else `~/.daycare`.
In a settings file, `engine.db.url` (a path or URL, as the later TypeScript releases wrote it)
wins over `engine.dbPath`, which wins over `engine.dataDir`/daycare.db, like the legacy
`configResolve`; relative paths resolve against the working directory, as they did there.
The data folder (users' files, processes) is `engine.dataDir` when given; otherwise the folder
of a database file named directly (`--db`, `DAYCARE_DB_URL`), and the Daycare home for a URL
(a PostgreSQL database has no folder) or a database named by the settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daycare.storage.errors import StorageError

DB_URL_VARIABLE = "DAYCARE_DB_URL"
HOME_VARIABLE = "DAYCARE_HOME"
DB_FILE_NAME = "daycare.db"
SANDBOXES = ("bubblewrap", "none")


def daycare_home(environ: Mapping[str, str] | None = None) -> Path:
    """The default data folder: `DAYCARE_HOME` when set, else `~/.daycare`."""
    environ = os.environ if environ is None else environ
    home = environ.get(HOME_VARIABLE, "").strip()
    if home:
        return Path(home).expanduser().resolve()
    return Path("~/.daycare").expanduser()


@dataclass(frozen=True)
class Config:
    """Where the database is and where that choice came from (for messages), and the engine's settings."""

    db_location: str
    data_dir: Path
    source: str
    sandbox: str = "bubblewrap"  # engine.sandbox: how processes run; "none" only when the settings say so
    stop_processes: bool = False  # engine.stopProcesses: stop managed processes with the engine (legacy: no)
    db_shared: bool = False  # engine.db.shared: several engines run on one PostgreSQL database (or ?shared=true)
    clock_file: Path | None = None  # engine.clockFile: tests drive the schedulers' clock through this file


def config_load(
    db: str | None = None,
    settings: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Resolves the database location; raises StorageError for an empty `db` or an unreadable settings file."""
    environ = os.environ if environ is None else environ
    if db is not None:
        if not db.strip():
            raise StorageError(
                "--db is empty.", "Pass a database file, a sqlite:// URL or a postgres:// URL, or leave --db out."
            )
        return Config(db, _data_dir_of(db, environ), "--db")
    if settings is not None:
        return _settings_config(Path(settings).expanduser(), required=True, environ=environ)
    env_value = environ.get(DB_URL_VARIABLE, "").strip()
    if env_value:
        return Config(env_value, _data_dir_of(env_value, environ), DB_URL_VARIABLE)
    home = daycare_home(environ)
    default_settings = home / "settings.json"
    if default_settings.exists():
        return _settings_config(default_settings, required=False, environ=environ)
    return Config(str(home / DB_FILE_NAME), home, "default")


def _data_dir_of(location: str, environ: Mapping[str, str]) -> Path:
    if "://" in location:  # a sqlite:// URL, or a PostgreSQL database, which has no folder
        return daycare_home(environ)
    return Path(location).expanduser().resolve().parent


def _settings_config(path: Path, required: bool, environ: Mapping[str, str]) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise StorageError(f"Settings file not found: {path}", "Pass an existing file to --settings.") from None
        text = "{}"
    except UnicodeDecodeError as exc:
        raise StorageError(
            f"Settings file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}).",
            "Save it as UTF-8 JSON, or pass the database directly with --db.",
        ) from None
    except OSError as exc:
        raise StorageError(f"Cannot read settings file {path}: {exc.strerror}") from None
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StorageError(
            f"Settings file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}).",
            "Fix the file, or pass the database directly with --db.",
        ) from None
    if not isinstance(settings, dict):
        raise StorageError(
            f"Settings file {path} does not hold a JSON object (it holds {_json_kind(settings)}).",
            'It should look like {"engine": {"dataDir": "..."}}; or pass the database directly with --db.',
        )
    engine = settings.get("engine", {})
    if not isinstance(engine, dict):
        raise StorageError(f"Settings file {path}: engine must be an object, not {_json_kind(engine)}.")
    data_dir = _setting_path(engine, "dataDir", path)
    db_path = _setting_path(engine, "dbPath", path)
    db_url = _setting_url(engine, path)
    # Like the legacy code, settings that name neither fall back to ~/.daycare; the source says so.
    source = str(path) if data_dir or db_path else f"{path}, which names no engine.dbPath or engine.dataDir"
    if db_url is not None:
        ignored = f"; engine.dbPath {db_path} is ignored" if db_path else ""
        source = f"{path}, engine.db.url{ignored}"
    data_dir = data_dir or daycare_home(environ)
    sandbox = engine.get("sandbox", "bubblewrap")
    if sandbox not in SANDBOXES:
        raise StorageError(
            f"Settings file {path}: engine.sandbox is {json.dumps(sandbox)}; expected one of "
            + ", ".join(json.dumps(name) for name in SANDBOXES)
            + '. "none" runs processes unsandboxed.'
        )
    stop_processes = engine.get("stopProcesses", False)
    if not isinstance(stop_processes, bool):
        raise StorageError(f"Settings file {path}: engine.stopProcesses must be true or false.")
    location = db_url if db_url is not None else str(db_path or data_dir / DB_FILE_NAME)
    db_shared = _setting_shared(engine, path, location)
    clock_file = _setting_path(engine, "clockFile", path)
    return Config(location, data_dir, source, sandbox, stop_processes, db_shared, clock_file)


def _setting_shared(engine: dict[str, object], settings_path: Path, location: str) -> bool:
    """`engine.db.shared`: true lets several engines share the PostgreSQL database; refused for a SQLite file."""
    db = engine.get("db")
    shared = db.get("shared", False) if isinstance(db, dict) else False
    if not isinstance(shared, bool):
        raise StorageError(f"Settings file {settings_path}: engine.db.shared must be true or false.")
    if shared and "postgres" not in location.split("://", 1)[0]:
        raise StorageError(
            f"Settings file {settings_path}: engine.db.shared is true, but the database is not PostgreSQL.",
            "Only a PostgreSQL database can be shared by several engines; a SQLite file has one engine at a time."
            " Set engine.db.url to a postgres:// URL, or remove engine.db.shared.",
        )
    return shared


def _setting_url(engine: dict[str, object], settings_path: Path) -> str | None:
    """`engine.db.url`: a database file, `sqlite://` or `postgres://` URL, checked as --db would be; None if absent."""
    db = engine.get("db")
    if db is None:
        return None
    if not isinstance(db, dict):
        raise StorageError(f"Settings file {settings_path}: engine.db must be an object, not {_json_kind(db)}.")
    url = db.get("url")
    if url is None:
        return None
    example = 'e.g. "postgres://user@host:5432/daycare" or "/var/lib/daycare/daycare.db"'
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"Settings file {settings_path}: engine.db.url must be a non-empty string ({example}).")
    from daycare.storage.db.location import database_location  # the storage package imports this module

    try:
        location = database_location(url.strip())
    except StorageError as exc:
        raise StorageError(f"Settings file {settings_path}: engine.db.url: {exc.problem}", *exc.advice) from None
    if location.server is None and location.path is not None and "://" not in url:
        return str(location.path)  # a relative path resolves against the working directory, as engine.dbPath does
    return url.strip()


def _json_kind(value: object) -> str:
    """`an array`, `a string`, ... for messages about a JSON value."""
    if value is None:
        return "null"
    kinds = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"), (list, "an array"))
    return next((kind for cls, kind in kinds if isinstance(value, cls)), "an object")


def _setting_path(engine: dict[str, object], key: str, settings_path: Path) -> Path | None:
    value = engine.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise StorageError(f"Settings file {settings_path}: engine.{key} must be a non-empty string.")
    return Path(value).expanduser().resolve()
