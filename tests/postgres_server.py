"""The PostgreSQL server the tests use, found once per session, and a fresh schema per test (a pytest plugin).

Discovery, in order: `DAYCARE_TEST_POSTGRES_URL` (set but unreachable is an error, not a skip);
postgresql://postgres@127.0.0.1:5432; a throwaway cluster from `initdb`/`pg_ctl` (PATH or
/usr/lib/postgresql/<version>/bin), deleted at the end of the session; else none, and the
PostgreSQL half of the suite is skipped with one line saying why. `DAYCARE_TEST_POSTGRES_REQUIRED=1`
(set by `.ci/run`) makes "none" a failure. Tests make their schemas `t_<hex>` in the database
`daycare_test` and drop them afterwards.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

URL_VARIABLE = "DAYCARE_TEST_POSTGRES_URL"
REQUIRED_VARIABLE = "DAYCARE_TEST_POSTGRES_REQUIRED"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Where Debian and Ubuntu put the server programs (not on PATH there).
BINARY_GLOBS: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)
TEST_DATABASE = "daycare_test"
CONNECT_TIMEOUT = 5.0  # seconds; a server on this machine answers in milliseconds
START_TIMEOUT = 60  # seconds pg_ctl waits for a throwaway cluster
SCHEMA_LOCK_TIMEOUT = "10s"  # how long dropping a test's schema waits for a connection the test left open
# A test schema is t_ + its creation time (8 hex digits of Unix seconds) + 12 random hex digits: random so that
# parallel runs never clash, timed so that each session can drop those that a killed run left behind.
SCHEMA_PATTERN = r"^t_[0-9a-f]{20}$"
SCHEMA_STALE_AFTER = 6 * 3600  # seconds; no test runs that long
SKIPPED = "the PostgreSQL half of the suite is skipped"
# Errors that mean nothing usable answered at an address.
UNREACHABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass
class Cluster:
    """A throwaway cluster: its folder (data, socket, log), port and the programs that run it."""

    folder: Path
    port: int
    pg_ctl: Path
    user: str | None  # the system user that runs it when this process is root

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def stop(self) -> None:
        """Stops the server (immediate: nothing in it is worth a checkpoint) and deletes its folder; idempotent."""
        if not self.folder.exists():
            return
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            stopped = _run_as(self.user, [str(self.pg_ctl), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
            if stopped.returncode and pid_file.exists():
                with contextlib.suppress(ValueError, OSError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class PostgresServer:
    """A server the tests may use: its URL (the maintenance database), where it came from and its version."""

    url: str
    origin: str
    version: str
    cluster: Cluster | None = None

    @property
    def display(self) -> str:
        return url_display(self.url)

    def schema_url(self, schema: str) -> str:
        """The URL of `schema` in the test database, as Daycare takes it (`?schema=`)."""
        parts = urlsplit(self.url)
        query = [(name, value) for name, value in parse_qsl(parts.query) if name != "schema"]
        return urlunsplit(("postgres", parts.netloc, f"/{TEST_DATABASE}", urlencode([*query, ("schema", schema)]), ""))


@dataclass
class Discovery:
    """What the session found: a server, or the reasons there is none; `error` is a misconfiguration to report."""

    server: PostgresServer | None = None
    reasons: list[str] = field(default_factory=list)
    error: str | None = None
    not_used: str | None = None  # why this run does not look for a server at all

    @property
    def line(self) -> str:
        """The one line pytest prints about PostgreSQL."""
        if self.server is not None:
            return (
                f"PostgreSQL: {self.server.version} at {self.server.display} ({self.server.origin});"
                f" a fresh schema per test in database {TEST_DATABASE}"
            )
        if self.not_used is not None:
            return f"PostgreSQL: not used ({self.not_used})"
        return f"PostgreSQL: none found ({', '.join(self.reasons)}); {SKIPPED}"


def url_display(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def _dsn(url: str, database: str | None = None) -> tuple[str, str | None]:
    """The DSN asyncpg takes for `url` (optionally another database), and the `schema` parameter it carried."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((value for name, value in query if name == "schema"), None)
    rest = urlencode([(name, value) for name, value in query if name != "schema"])
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit(("postgresql", parts.netloc, path, rest, "")), schema


async def postgres_connect(url: str, *, database: str | None = None) -> Any:
    """A raw asyncpg connection to `url`; a `?schema=` URL gets that schema as its search_path."""
    dsn, schema = _dsn(url, database)
    settings = {"search_path": schema} if schema else None
    return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, server_settings=settings)


@contextlib.asynccontextmanager
async def postgres_connection(url: str) -> AsyncIterator[Any]:
    """A raw asyncpg connection to a test schema URL, for assertions; closed on exit."""
    connection = await postgres_connect(url)
    try:
        yield connection
    finally:
        await connection.close()


def _failure(error: BaseException) -> str:
    """A few words on why connecting failed."""
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, asyncio.TimeoutError):
        return "no answer"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


async def _server_probe(url: str) -> str:
    """The server's version at `url`; raises one of UNREACHABLE when it does not answer."""
    connection = await postgres_connect(url)
    try:
        return str(await connection.fetchval("SHOW server_version")).split()[0]
    finally:
        await connection.close()


async def _test_database_ensure(url: str) -> None:
    """Creates the database `daycare_test` (UTF8, collation C) on the server at `url` unless it exists;
    its sessions commit without waiting for the disk, and schemas killed runs left there are dropped."""
    try:
        connection = await postgres_connect(url, database=TEST_DATABASE)
    except asyncpg.InvalidCatalogNameError:
        connection = None
    if connection is None:
        admin = await postgres_connect(url)
        try:
            # Another run on the same server may create it at the same moment.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await admin.execute(
                    f"CREATE DATABASE {TEST_DATABASE} ENCODING 'UTF8' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
                )
        finally:
            await admin.close()
        connection = await postgres_connect(url, database=TEST_DATABASE)
    try:
        encoding = await connection.fetchval(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
        )
        # A commit need not wait for the disk in a database of throwaway schemas: ~3 ms less per commit.
        # Only a speed-up: no right to change it, or another run changing it at the same moment, is fine.
        if await connection.fetchval("SHOW synchronous_commit") != "off":
            with contextlib.suppress(asyncpg.PostgresError):
                await connection.execute(f"ALTER DATABASE {TEST_DATABASE} SET synchronous_commit = off")
        with contextlib.suppress(asyncpg.PostgresError):  # a speed-up only: another run may hold a catalog
            await connection.execute("SET lock_timeout = '2s'")
            await catalogs_vacuum(connection, full=True)
    finally:
        await connection.close()
    if encoding != "UTF8":
        raise RuntimeError(f"the database {TEST_DATABASE} has encoding {encoding}, not UTF8; drop it to have it remade")
    await stale_schemas_drop(url)


# The system catalogs every schema's tables, indexes and types are written into. Each test creates and
# drops a schema, which leaves dead rows there; a server without autovacuum (as on this project's
# machines) never clears them, and every catalog read (the migrations read pg_class by schema)
# then scans all of them: after a few thousand tests, 50 ms per query instead of 0.1 ms.
CATALOGS = (
    "pg_class", "pg_attribute", "pg_type", "pg_depend", "pg_index", "pg_constraint",
    "pg_attrdef", "pg_sequence", "pg_trigger", "pg_description", "pg_namespace", "pg_init_privs",
)  # fmt: skip
VACUUM_EVERY = 25  # schemas dropped between two plain VACUUMs of CATALOGS
_dropped = 0


async def catalogs_vacuum(connection: Any, *, full: bool = False) -> None:
    """Clears the dead rows the test schemas left in the catalogs (FULL also gives the space back)."""
    await connection.execute(f"VACUUM {'FULL ' if full else ''}{', '.join(CATALOGS)}")


def schema_name(now: float | None = None) -> str:
    """A new test schema's name (see SCHEMA_PATTERN)."""
    return f"t_{int(time.time() if now is None else now):08x}{secrets.token_hex(6)}"


async def stale_schemas_drop(url: str) -> list[str]:
    """Drops the test schemas older than SCHEMA_STALE_AFTER (left by killed runs); which it dropped."""
    connection = await postgres_connect(url, database=TEST_DATABASE)
    dropped = []
    try:
        await connection.execute("SET lock_timeout = '1s'")
        names = await connection.fetch("SELECT nspname FROM pg_namespace WHERE nspname ~ $1", SCHEMA_PATTERN)
        for (name,) in names:
            if time.time() - int(name[2:10], 16) > SCHEMA_STALE_AFTER:
                with contextlib.suppress(asyncpg.PostgresError):  # another run may be dropping it too
                    await connection.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
                    dropped.append(name)
    finally:
        await connection.close()
    return dropped


def _server_found(url: str, origin: str) -> PostgresServer:
    """The server at `url` with its test database ready; raises one of UNREACHABLE or RuntimeError."""

    async def found() -> PostgresServer:
        version = await _server_probe(url)
        await _test_database_ensure(url)
        return PostgresServer(url, origin, version)

    return asyncio.run(found())


def _version_key(name: str) -> list[int]:
    return [int(part) if part.isdigit() else 0 for part in name.split(".")]


def server_programs(path: str | None = None) -> tuple[Path, Path] | None:
    """`initdb` and `pg_ctl` from one folder: PATH first, then BINARY_GLOBS (newest version first); None if absent."""
    folders = [Path(found).parent for found in [shutil.which("initdb", path=path)] if found]
    for pattern in BINARY_GLOBS:
        # Newest version first: /usr/lib/postgresql/16/bin before .../15/bin.
        matches = sorted(glob.glob(pattern), key=lambda folder: _version_key(Path(folder).parent.name), reverse=True)
        folders.extend(Path(folder) for folder in matches)
    for folder in folders:
        initdb, pg_ctl = folder / "initdb", folder / "pg_ctl"
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return None


def _run_as(user: str | None, command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `command` (as `user` when given: initdb and pg_ctl refuse root), capturing its output."""
    if user is not None:
        if shutil.which("runuser"):
            command = ["runuser", "-u", user, "--", *command]
        else:
            command = ["su", "-s", "/bin/sh", user, "-c", shlex.join(command)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)


def _port_free() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {result.returncode}"


def cluster_start(programs: tuple[Path, Path]) -> Cluster:
    """Starts a throwaway cluster on 127.0.0.1 and a unix socket in its own temp folder; RuntimeError says why not.

    As root it runs as the `postgres` system user, which owns the folder.
    """
    initdb, pg_ctl = programs
    user = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("initdb refuses to run as root and there is no postgres user") from None
        user = account.pw_name
    folder = Path(tempfile.mkdtemp(prefix="daycare-pg-"))
    if user is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    cluster = Cluster(folder, 0, pg_ctl, user)
    try:
        created = _run_as(
            user,
            [str(initdb), "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N"],
            cwd=folder,  # the programs look up their own path, which fails in a folder they may not read
        )
        if created.returncode:
            raise RuntimeError(f"initdb failed: {_last_line(created)}")
        for _attempt in range(3):  # another process may take the free port before the server does
            cluster.port = _port_free()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {cluster.port} -c unix_socket_directories='{folder}'"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            started = _run_as(
                user,
                [
                    *(str(pg_ctl), "-D", str(cluster.data), "-l", str(folder / "server.log")),
                    *("-w", "-t", str(START_TIMEOUT), "-o", options, "start"),
                ],
                cwd=folder,
            )
            if not started.returncode:
                return cluster
        log = folder / "server.log"
        detail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise RuntimeError(f"pg_ctl start failed: {detail[0] if detail else _last_line(started)}")
    except BaseException:
        cluster.stop()
        raise


def _terminate_interrupts() -> None:
    """Makes SIGTERM interrupt the run like Ctrl-C, so that a stopped run still stops its cluster."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, interrupt)


def postgres_discover(environment: dict[str, str] | None = None) -> Discovery:
    """Finds the server the tests use (see the module's docstring); starts a throwaway cluster if it must."""
    environment = dict(os.environ if environment is None else environment)
    if environment.get("DAYCARE_TEST_BACKEND") == "yielding":
        return Discovery(not_used="DAYCARE_TEST_BACKEND=yielding runs the SQLite half only")
    url = environment.get(URL_VARIABLE, "").strip()
    if url:
        try:
            return Discovery(_server_found(url, URL_VARIABLE))
        except (*UNREACHABLE, RuntimeError) as error:
            return Discovery(
                error=f"{URL_VARIABLE}={url_display(url)} cannot be used: {_failure(error)}."
                f" Start that server, fix the URL, or unset {URL_VARIABLE} to let the tests look for one."
            )
    reasons = [f"{URL_VARIABLE} unset"]
    try:
        return Discovery(_server_found(DEFAULT_URL, "the default address"))
    except (*UNREACHABLE, RuntimeError) as error:
        reasons.append(f"{_address(DEFAULT_URL)} {_failure(error)}")
    programs = server_programs(environment.get("PATH"))
    if programs is None:
        reasons.append("initdb not installed")
        return Discovery(reasons=reasons)
    try:
        cluster = cluster_start(programs)
    except RuntimeError as error:
        reasons.append(str(error))
        return Discovery(reasons=reasons)
    except OSError as error:  # runuser/su missing, a temp folder that cannot be made or given away
        reasons.append(f"no throwaway cluster: {error}")
        return Discovery(reasons=reasons)
    atexit.register(cluster.stop)  # pytest_unconfigure stops it too; this covers a crash in between
    _terminate_interrupts()
    cluster_url = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    try:
        server = _server_found(cluster_url, f"a throwaway cluster from {programs[0].parent}")
    except (*UNREACHABLE, RuntimeError) as error:
        cluster.stop()
        reasons.append(f"the throwaway cluster did not answer: {_failure(error)}")
        return Discovery(reasons=reasons)
    server.cluster = cluster
    return Discovery(server)


# The pytest plugin: tests/conftest.py loads it; `-p tests.postgres_server` loads it alone.

DISCOVERY = pytest.StashKey[Discovery]()


def pytest_configure(config: pytest.Config) -> None:
    """Finds the server once per session; an unusable configured URL or a required but missing server stops the run."""
    if getattr(config.option, "help", False) or getattr(config.option, "version", False):
        return
    discovery = postgres_discover()
    config.stash[DISCOVERY] = discovery
    if discovery.error is not None:
        pytest.exit(discovery.error, returncode=pytest.ExitCode.USAGE_ERROR)
    if discovery.server is None and discovery.not_used is None and os.environ.get(REQUIRED_VARIABLE) == "1":
        pytest.exit(
            f"PostgreSQL: none found ({', '.join(discovery.reasons)}), and {REQUIRED_VARIABLE}=1 requires one."
            f" Start PostgreSQL on {_address(DEFAULT_URL)}, set {URL_VARIABLE}, or install initdb and pg_ctl.",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    discovery = config.stash.get(DISCOVERY, None)
    if discovery is not None and discovery.server is not None and discovery.server.cluster is not None:
        discovery.server.cluster.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    discovery = config.stash.get(DISCOVERY, None)
    return discovery.line if discovery is not None else None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Repeats the line at the end when `-q` hid the header."""
    discovery = config.stash.get(DISCOVERY, None)
    if discovery is not None and config.get_verbosity() < 0:
        terminalreporter.write_line(discovery.line)


def postgres_discovery(config: pytest.Config) -> Discovery:
    """The session's discovery (the plugin's pytest_configure made it)."""
    return config.stash[DISCOVERY]


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> PostgresServer:
    """The session's server; skips the test, saying why, when there is none."""
    discovery = postgres_discovery(pytestconfig)
    if discovery.server is None:
        pytest.skip(discovery.line)
    return discovery.server


@contextlib.asynccontextmanager
async def postgres_schema(server: PostgresServer) -> AsyncIterator[str]:
    """A fresh empty schema `t_<hex>` in the test database, as a URL; dropped (CASCADE) on exit."""
    schema = schema_name()
    connection = await postgres_connect(server.url, database=TEST_DATABASE)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
    finally:
        await connection.close()
    try:
        yield server.schema_url(schema)
    finally:
        global _dropped
        connection = await postgres_connect(server.url, database=TEST_DATABASE)
        try:
            await connection.execute(f"SET lock_timeout = '{SCHEMA_LOCK_TIMEOUT}'")
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            _dropped += 1
            if _dropped % VACUUM_EVERY == 0:
                await catalogs_vacuum(connection)
        finally:
            await connection.close()


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh schema URL (postgres://.../daycare_test?schema=t_<hex>) for PostgreSQL-only tests."""
    async with postgres_schema(postgres_server) as url:
        yield url


def pg_dump_require() -> None:
    """Skips the calling test, saying why, when pg_dump is not on PATH (a server without its client tools)."""
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed (Debian: postgresql-client); this test needs it")
