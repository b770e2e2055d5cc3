"""How the tests find PostgreSQL (tests/postgres_server.py): a bad URL stops the run, a missing server skips the
PostgreSQL half (or fails it when required), a throwaway cluster really serves, and each test's schema is dropped."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.postgres_server import (
    REQUIRED_VARIABLE,
    SCHEMA_PATTERN,
    TEST_DATABASE,
    URL_VARIABLE,
    PostgresServer,
    cluster_start,
    postgres_connect,
    postgres_connection,
    postgres_discover,
    postgres_schema,
    schema_name,
    server_programs,
    stale_schemas_drop,
    url_display,
)

ROOT = Path(__file__).resolve().parents[1]
# Runs pytest with the plugin alone, its default address and program folders replaced by the arguments.
RUNNER = """
import sys
import pytest
import tests.postgres_server as plugin
plugin.DEFAULT_URL = sys.argv[1]
if sys.argv[2] == "no-programs":
    plugin.BINARY_GLOBS = ()
sys.exit(pytest.main(sys.argv[3:], plugins=[plugin]))
"""
TINY_TESTS = """
import json
import os
import re
from pathlib import Path

from tests.postgres_server import postgres_connection


async def test_schema(postgres_server, postgres_url):
    async with postgres_connection(postgres_url) as connection:
        assert await connection.fetchval("SELECT current_schema()") == postgres_url.rpartition("schema=")[2]
    cluster = postgres_server.cluster
    Path(os.environ["REPORT"]).write_text(
        json.dumps({"folder": str(cluster.folder) if cluster else None, "port": cluster.port if cluster else None})
    )
"""

TINY_CONFIG = "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"


def port_closed() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pytest_run(
    tmp_path: Path, *, default_url: str, programs: bool, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """pytest on TINY_TESTS in a subprocess with only the discovery plugin and `environment`; its output."""
    (tmp_path / "test_tiny.py").write_text(TINY_TESTS)
    (tmp_path / "pytest.ini").write_text(TINY_CONFIG)
    names = ("HOME", "LANG", "TMPDIR", "PATH")
    base = {name: os.environ[name] for name in names if name in os.environ}
    return subprocess.run(
        [
            *(sys.executable, "-c", RUNNER, default_url, "programs" if programs else "no-programs"),
            *("-q", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"), str(tmp_path / "test_tiny.py")),
        ],
        cwd=ROOT,
        env={**base, "REPORT": str(tmp_path / "report.json"), **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_url_display_hides_the_password_and_schema_url_keeps_it() -> None:
    server = PostgresServer("postgresql://daycare:s3cret@db.local:6543/postgres?sslmode=disable", "test", "15")
    assert url_display(server.url) == "postgresql://daycare@db.local:6543/postgres?sslmode=disable"
    assert (
        server.schema_url("t_ab12")
        == "postgres://daycare:s3cret@db.local:6543/daycare_test?sslmode=disable&schema=t_ab12"
    )


def test_an_unreachable_configured_url_stops_the_run(tmp_path: Path) -> None:
    port = port_closed()
    result = pytest_run(
        tmp_path,
        default_url="postgresql://postgres@127.0.0.1:5432/postgres",
        programs=True,
        environment={URL_VARIABLE: f"postgresql://postgres:s3cret@127.0.0.1:{port}/postgres"},
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert f"{URL_VARIABLE}=postgresql://postgres@127.0.0.1:{port}/postgres cannot be used: refused" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("required", [False, True], ids=["optional", "required"])
def test_no_server_skips_the_postgres_half_or_fails_when_required(tmp_path: Path, required: bool) -> None:
    port = port_closed()
    empty = tmp_path / "bin"
    empty.mkdir()
    result = pytest_run(
        tmp_path,
        default_url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        programs=False,
        environment={"PATH": str(empty), **({REQUIRED_VARIABLE: "1"} if required else {})},
    )
    output = result.stdout + result.stderr
    reasons = f"({URL_VARIABLE} unset, 127.0.0.1:{port} refused, initdb not installed)"
    if required:
        assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
        assert f"PostgreSQL: none found {reasons}, and {REQUIRED_VARIABLE}=1 requires one." in result.stderr
    else:
        assert result.returncode == pytest.ExitCode.OK, output
        line = f"PostgreSQL: none found {reasons}; the PostgreSQL half of the suite is skipped"
        assert result.stdout.count(line) == 1, output
        assert "1 skipped" in result.stdout
    assert not (tmp_path / "report.json").exists()


def test_the_yielding_run_does_not_look_for_a_server() -> None:
    discovery = postgres_discover({"DAYCARE_TEST_BACKEND": "yielding", URL_VARIABLE: "postgresql://nowhere.invalid/x"})
    assert discovery.server is None and discovery.error is None
    assert discovery.line == "PostgreSQL: not used (DAYCARE_TEST_BACKEND=yielding runs the SQLite half only)"


def test_the_programs_are_found_where_debian_puts_them_off_path(tmp_path: Path) -> None:
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not installed:
        pytest.skip("no /usr/lib/postgresql/<version>/bin/initdb on this machine")
    programs = server_programs(path=str(tmp_path))  # a PATH without initdb
    assert programs is not None
    assert programs[0].parent.parent.parent == Path("/usr/lib/postgresql")
    assert programs[1] == programs[0].with_name("pg_ctl")


def cluster_programs() -> tuple[Path, Path]:
    programs = server_programs()
    if programs is None:
        pytest.skip("initdb and pg_ctl are not installed (PATH, /usr/lib/postgresql/*/bin)")
    return programs


async def test_a_throwaway_cluster_serves_on_loopback_and_is_deleted() -> None:
    cluster = cluster_start(cluster_programs())
    try:
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", timeout=5)
        try:
            assert await connection.fetchval("SELECT 6 * 7") == 42
            assert await connection.fetchval("SHOW listen_addresses") == "127.0.0.1"
            assert await connection.fetchval("SHOW server_encoding") == "UTF8"
        finally:
            await connection.close()
        assert (cluster.folder / f".s.PGSQL.{cluster.port}").is_socket()
    finally:
        cluster.stop()
    assert not cluster.folder.exists()
    with pytest.raises(OSError):
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", timeout=5)


@pytest.mark.slow
def test_discovery_falls_back_to_a_throwaway_cluster_and_removes_it(tmp_path: Path) -> None:
    programs = cluster_programs()
    result = pytest_run(
        tmp_path,
        default_url=f"postgresql://postgres@127.0.0.1:{port_closed()}/postgres",
        programs=True,
        environment={"PATH": f"{programs[0].parent}{os.pathsep}{os.environ.get('PATH', '')}", REQUIRED_VARIABLE: "1"},
    )
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert f"(a throwaway cluster from {programs[0].parent}); a fresh schema per test" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["folder"] is not None and not Path(report["folder"]).exists()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", report["port"]))


async def test_each_schema_is_fresh_and_dropped_afterwards(postgres_server: PostgresServer) -> None:
    async with postgres_schema(postgres_server) as first, postgres_schema(postgres_server) as second:
        assert first != second
        schema = first.rpartition("schema=")[2]
        assert re.match(SCHEMA_PATTERN, schema)
        async with postgres_connection(first) as connection:
            assert await connection.fetchval("SELECT current_schema()") == schema
            assert await connection.fetchval("SELECT current_database()") == "daycare_test"
            assert await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema) == 0
            await connection.execute("CREATE TABLE kept (id BIGINT PRIMARY KEY)")
            await connection.execute("INSERT INTO kept VALUES (1)")
    async with postgres_connection(postgres_server.schema_url("public")) as connection:
        left = await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1::text[])",
            [schema, second.rpartition("schema=")[2]],
        )
    assert left == 0


async def test_schemas_a_killed_run_left_are_dropped_by_the_next_session(postgres_server: PostgresServer) -> None:
    stale, recent = schema_name(time.time() - 7 * 3600), schema_name(time.time() - 3600)
    connection = await postgres_connect(postgres_server.url, database=TEST_DATABASE)
    try:
        for name in (stale, recent):
            await connection.execute(f"CREATE SCHEMA {name}")
            await connection.execute(f"CREATE TABLE {name}.kept (id BIGINT)")
        dropped = await stale_schemas_drop(postgres_server.url)
        query = "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])"
        left = await connection.fetch(query, [stale, recent])
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {recent} CASCADE")
        await connection.close()
    assert stale in dropped and recent not in dropped
    assert [row["nspname"] for row in left] == [recent]
