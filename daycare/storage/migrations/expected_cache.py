"""An on-disk cache of the expected SQLite schema, so that a new process skips the scratch database.

What applying some migration files to an empty SQLite database gives (each table's catalog text
and description, see `schema_check`) depends only on those files, on the code that runs them
and reads the catalog, and on the SQLite library. The cache key hashes all of them, so an entry
is never stale: an edited file or another SQLite makes a new key. The folder is
`DAYCARE_CACHE_DIR`, else `$XDG_CACHE_HOME/daycare`, else `~/.cache/daycare` (0700, files 0600).
A missing, unreadable, corrupt or unwritable entry is ignored: the caller builds the schema.

An entry is one line (the key and the sha256 of the body), then the body: the texts and
descriptions in `marshal`, which keeps their tuples and frozensets and loads several times faster
than JSON. marshal is not meant for data from others, so an entry is read only when the user owns
it, no one else can write it, and its body has the sha256 its first line gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import marshal
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from daycare.storage.db.backend import SQLITE_VERSION
from daycare.storage.migrations.catalog import CatalogText, TableSchema
from daycare.storage.migrations.loader import MigrationFile

CACHE_VARIABLE = "DAYCARE_CACHE_DIR"
FORMAT = 1  # changes whenever what an entry holds changes
_PREFIX = "sqlite-schema-"
_STORAGE = Path(__file__).resolve().parents[1]
# The code that runs the migration files on the scratch and reads its catalog (besides the files themselves).
SOURCES = tuple(
    _STORAGE / name
    for name in (
        "migrations/baseline_v1.py",
        "migrations/dialect_guard.py",
        "migrations/executor.py",
        "migrations/recorder.py",
        "migrations/catalog.py",
        "migrations/schema_check.py",
        "migrations/expected_cache.py",
        "db/backend.py",
        "db/database.py",
        "db/sqlite.py",
        "db/text.py",
    )
)

Expected = tuple[dict[str, CatalogText], dict[str, TableSchema]]


def cache_folder() -> Path | None:
    """Where entries go: `DAYCARE_CACHE_DIR`, `$XDG_CACHE_HOME/daycare` or `~/.cache/daycare`; None without a home."""
    explicit = os.environ.get(CACHE_VARIABLE, "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):  # the XDG rule: a relative value is ignored
        return Path(xdg) / "daycare"
    try:
        return Path.home() / ".cache" / "daycare"
    except RuntimeError:  # no home to be found
        return None


def cache_key(migrations: Sequence[MigrationFile]) -> str | None:
    """The sha256 of the format, the Python and SQLite versions, the code in SOURCES and the files' names and
    contents; None when a file cannot be read."""
    digest = hashlib.sha256(f"{FORMAT}\0{sys.version}\0{SQLITE_VERSION}\0".encode())
    try:
        for path in (*SOURCES, *(migration.path for migration in migrations)):
            content = path.read_bytes()
            digest.update(f"{path.name}\0{len(content)}\0".encode())
            digest.update(content)
    except OSError:
        return None
    return digest.hexdigest()


def _encode(texts: dict[str, CatalogText], tables: dict[str, TableSchema]) -> bytes:
    fields = [field.name for field in dataclasses.fields(TableSchema)]
    return marshal.dumps((texts, {name: tuple(getattr(table, f) for f in fields) for name, table in tables.items()}))


def _decode(body: bytes) -> Expected:
    """The texts and tables of an entry; raises when it does not hold one (a text and a description per table)."""
    texts, described = marshal.loads(body)
    if not isinstance(texts, dict) or not isinstance(described, dict) or texts.keys() != described.keys():
        raise ValueError("not an entry")
    if not all(isinstance(text, frozenset) for text in texts.values()):
        raise ValueError("not an entry")
    return texts, {name: TableSchema(*fields) for name, fields in described.items()}


def _entry(key: str) -> Path | None:
    folder = cache_folder()
    return None if folder is None else folder / f"{_PREFIX}{key}"


def expected_cache_read(key: str) -> Expected | None:
    """The entry stored under `key`; None when there is none or it cannot be trusted (not the user's own,
    writable by others, unreadable, corrupt)."""
    path = _entry(key)
    if path is None:
        return None
    try:
        with path.open("rb") as file:
            status = os.fstat(file.fileno())
            if status.st_uid != os.geteuid() or status.st_mode & 0o022:
                return None
            header, _, body = file.read().partition(b"\n")
        # The header is the key and the body's sha256: a file cut short or damaged is noticed.
        if header.decode() != f"{key} {hashlib.sha256(body).hexdigest()}":
            return None
        return _decode(body)
    except Exception:  # whatever a damaged entry raises (OSError, EOFError, ValueError, TypeError...): built instead
        return None


def expected_cache_write(key: str, texts: dict[str, CatalogText], tables: dict[str, TableSchema]) -> None:
    """Stores an entry under `key` atomically (a temporary file renamed), replacing older entries;
    a failure is ignored."""
    path = _entry(key)
    if path is None:
        return
    with contextlib.suppress(OSError, ValueError):  # ValueError: a value marshal cannot write (no catalog type)
        body = _encode(texts, tables)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(f"{key} {hashlib.sha256(body).hexdigest()}\n".encode() + body)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        # One entry is enough: those of other keys (older files, another SQLite) would only pile up.
        for other in path.parent.glob(f"{_PREFIX}*"):
            if other != path:
                other.unlink(missing_ok=True)
