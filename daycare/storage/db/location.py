"""Where a database is: a SQLite file (or memory) or a PostgreSQL schema, parsed from a path or URL.

A location's URL parameters are checked against URL_PARAMETERS (SQLite) or
POSTGRES_URL_PARAMETERS (PostgreSQL). Nothing here opens a database: the settings and the
command line use it before (or without) loading the ORM.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from daycare.storage.errors import StorageError

POSTGRES_SCHEMES = ("postgres", "postgresql")
MEMORY = ":memory:"
SQLITE = "sqlite"
POSTGRES = "postgres"


@dataclass(frozen=True)
class UrlParameter:
    """A parameter a `sqlite://` URL may carry: the keywords it accepts, or a whole number from `minimum`."""

    keywords: tuple[str, ...] = ()
    minimum: int | None = None

    def allowed(self) -> str:
        if self.keywords:
            return "one of " + ", ".join(self.keywords)
        return "a whole number" + (f" from {self.minimum}" if self.minimum is not None else "")

    def value(self, text: str) -> str | None:
        """The value to pass on, or None when `text` is not allowed."""
        if self.keywords:
            return text.upper() if text.upper() in self.keywords else None
        digits = text[1:] if text.startswith("-") else text
        if not digits.isdigit() or (self.minimum is not None and int(text) < self.minimum):
            return None
        return str(int(text))


# The URL parameters a database location accepts: SQLite pragmas set on each connection, and the
# backend's lock_timeout (milliseconds a statement waits for another process's lock) and
# group_commit (concurrent writes share COMMITs: daycare.storage.db.group_commit).
URL_PARAMETERS: dict[str, UrlParameter] = {
    "synchronous": UrlParameter(("OFF", "NORMAL", "FULL", "EXTRA")),
    "foreign_keys": UrlParameter(("ON",)),  # the schema's cascades and references rely on them
    "temp_store": UrlParameter(("DEFAULT", "FILE", "MEMORY")),
    "secure_delete": UrlParameter(("ON", "OFF", "FAST")),
    "cache_size": UrlParameter(),
    "mmap_size": UrlParameter(minimum=0),
    "wal_autocheckpoint": UrlParameter(minimum=0),
    "journal_size_limit": UrlParameter(minimum=-1),
    "lock_timeout": UrlParameter(minimum=0),
    "group_commit": UrlParameter(("ON", "OFF")),
}

# The parameters a `postgres://` URL accepts: the schema that holds Daycare's tables (default: the
# server's search_path, usually `public`), TLS, and lock_timeout (milliseconds a statement waits for a row lock).
POSTGRES_URL_PARAMETERS: dict[str, UrlParameter] = {
    "schema": UrlParameter(),  # checked by _schema_name: any identifier
    "sslmode": UrlParameter(("DISABLE", "ALLOW", "PREFER", "REQUIRE", "VERIFY-CA", "VERIFY-FULL")),
    "lock_timeout": UrlParameter(minimum=0),
    # Several engines may run on the schema at once (docs/postgres.md, "Several engines on one database").
    "shared": UrlParameter(("TRUE", "FALSE", "ON", "OFF", "YES", "NO", "1", "0")),
}
_SHARED_YES = frozenset({"TRUE", "ON", "YES", "1"})
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Pragmas people may try that Daycare sets itself, with what to do instead.
_MANAGED_PARAMETERS = {
    "journal_mode": "Daycare keeps its files in WAL mode itself; remove it.",
    "busy_timeout": "Use lock_timeout (milliseconds) instead: it waits without blocking the event loop.",
    "shared": "Only a PostgreSQL database can be shared by several engines; a SQLite file has one engine at a time.",
}


def _url_parameters(
    query: str, text: str, known: dict[str, UrlParameter] = URL_PARAMETERS
) -> tuple[tuple[str, str], ...]:
    """The URL's parameters checked against `known`, values normalized; StorageError names a bad one."""
    seen: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        key = name.strip().lower()
        parameter = known.get(key)
        if parameter is None:
            advice = _MANAGED_PARAMETERS.get(key, f"Known parameters: {', '.join(sorted(known))}.")
            raise StorageError(f"Unknown parameter {name!r} in the database URL {text!r}.", advice)
        if key in seen:
            raise StorageError(f"The parameter {key} is given twice in the database URL {text!r}.")
        if key == "schema":
            seen[key] = _schema_name(value.strip(), text)
            continue
        checked = parameter.value(value.strip())
        if checked is None:
            if key == "foreign_keys" and value.strip().upper() in ("OFF", "0", "FALSE", "NO"):
                raise StorageError(
                    f"{name}={value} in the database URL {text!r} is not allowed: Daycare needs foreign keys on.",
                    "Its schema relies on them to delete dependent rows and refuse dangling references; remove it.",
                )
            raise StorageError(f"Invalid {name}={value!r} in the database URL {text!r}: use {parameter.allowed()}.")
        seen[key] = checked
    return tuple(seen.items())


def _schema_name(value: str, text: str) -> str:
    if not _SCHEMA_NAME.match(value):
        raise StorageError(
            f"Invalid schema={value!r} in the database URL {text!r}.",
            "Use a plain name: letters, digits and _, not starting with a digit, at most 63 characters.",
        )
    return value


@dataclass(frozen=True)
class PostgresServer:
    """Where a PostgreSQL database is: what asyncpg needs to connect, the password aside."""

    host: str | None
    port: int | None
    user: str | None
    password: str | None = field(repr=False)
    database: str

    @property
    def display(self) -> str:
        """postgres://user@host:port/database, without the password."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = self.host or ""
        if host.startswith("/"):  # a unix socket folder
            return f"postgres://{user}/{self.database}?host={host}"
        return f"postgres://{user}{host}{port}/{self.database}"


@dataclass(frozen=True)
class DatabaseLocation:
    """A SQLite file (or memory), or a PostgreSQL database, plus the parameters given in its URL."""

    path: Path | None
    pragmas: tuple[tuple[str, str], ...] = ()
    server: PostgresServer | None = None

    @property
    def dialect(self) -> str:
        return POSTGRES if self.server is not None else SQLITE

    @property
    def schema(self) -> str | None:
        """The PostgreSQL schema named by `?schema=`, or None for the server's default."""
        return dict(self.pragmas).get("schema") if self.server is not None else None

    @property
    def shared(self) -> bool:
        """Whether the URL says `shared=true`: several engines may run on this PostgreSQL schema at once."""
        return dict(self.pragmas).get("shared") in _SHARED_YES

    @property
    def display(self) -> str:
        if self.server is not None:
            shown, schema = self.server.display, self.schema
            return shown + (f"{'&' if '?' in shown else '?'}schema={schema}" if schema else "")
        return str(self.path) if self.path else MEMORY


def _password_hidden(text: str) -> str:
    """The URL with its password replaced by ***, for messages."""
    parts = urlsplit(text)
    if parts.password is None:
        return text
    return text.replace(f":{parts.password}@", ":***@", 1)


def _postgres_location(url: str) -> DatabaseLocation:
    parts = urlsplit(url)
    text = _password_hidden(url)
    parameters = dict(parse_qsl(parts.query, keep_blank_values=True))
    host = parameters.pop("host", None) or unquote(parts.hostname or "") or None
    query = "&".join(f"{name}={value}" for name, value in parameters.items())
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise StorageError(f"The PostgreSQL URL {text!r} names no database.", "Use postgres://user@host:port/database.")
    try:
        port = parts.port
    except ValueError:
        raise StorageError(f"The port in the PostgreSQL URL {text!r} is not a number.") from None
    server = PostgresServer(
        host=host,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=database,
    )
    return DatabaseLocation(None, _url_parameters(query, text, POSTGRES_URL_PARAMETERS), server)


def database_location(location: str | os.PathLike[str]) -> DatabaseLocation:
    """Parses a path, a `sqlite://` URL or a `postgres://` URL; raises StorageError for anything else."""
    text = os.fspath(location).strip()
    if not text:
        raise StorageError("The database location is empty.", "Pass a file path, a sqlite:// URL or a postgres:// URL.")
    if "://" not in text:
        return DatabaseLocation(None if text == MEMORY else Path(text).expanduser().resolve())
    parts = urlsplit(text)
    if parts.scheme in POSTGRES_SCHEMES:
        return _postgres_location(text)
    if parts.scheme != "sqlite":
        raise StorageError(
            f"Unsupported database URL scheme {parts.scheme!r} in {text!r}.",
            "Pass a file path, a sqlite:// URL or a postgres:// URL.",
        )
    raw_path = unquote(parts.netloc + parts.path)
    pragmas = _url_parameters(parts.query, text)
    if raw_path in ("", MEMORY):
        return DatabaseLocation(None, pragmas)
    return DatabaseLocation(Path(raw_path).expanduser().resolve(), pragmas)
