"""The wheel, installed in a fresh virtualenv, runs daycare from outside the checkout with the migrations it ships.

Slow (a build and an install, ~10 s with pip's cache): deselect with `-m "not slow"`. The install needs the package
index for the dependencies; when it is unreachable the test skips and says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import legacy_path
from tests.engine_process import engine_start_stop

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# The copy the wheel is built from leaves out the virtualenv, git, earlier build output (setuptools would pack a stale
# build/lib) and the tests with their fixtures.
TOP_LEVEL_IGNORED = {".git", ".venv", "venv", "build", "dist", "tests", "bench", ".mypy_cache", ".pytest_cache"}
# pip's words when it cannot reach an index; any other failure of the build or install fails the test.
OFFLINE = re.compile(
    r"Failed to establish a new connection|Temporary failure in name resolution|Name or service not known"
    r"|Network is unreachable|Connection refused|ConnectTimeoutError|ReadTimeoutError|ProxyError|SSLError"
)


@dataclass(frozen=True)
class Built:
    """A wheel built from a copy of the checkout, in a temp folder."""

    wheel: Path
    source: Path  # the copy the wheel was built from

    def migration_files(self, chain: str = "models") -> list[str]:
        """The file names of a chain: `models` (SQLite) or `postgres/models`."""
        return sorted(path.name for path in (self.source / "migrations" / chain).glob("*.py"))


@dataclass(frozen=True)
class Installed:
    """The wheel installed in a fresh virtualenv."""

    built: Built
    venv: Path
    work: Path  # a working directory outside the checkout

    @property
    def bin(self) -> Path:
        return self.venv / ("Scripts" if os.name == "nt" else "bin")

    def run(self, *command: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(part) for part in command],
            cwd=self.work,
            env=_environment(self.work),
            capture_output=True,
            text=True,
            timeout=60,
        )


def _environment(home: Path) -> dict[str, str]:
    # Nothing from the checkout or the test's own virtualenv may leak into the installed program.
    drop = {"DAYCARE_DB_URL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    environment = {key: value for key, value in os.environ.items() if key not in drop}
    environment.update(HOME=str(home), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    return environment


def _source_ignored(folder: str, names: list[str]) -> set[str]:
    ignored = {name for name in names if name == "__pycache__" or name.endswith(".egg-info")}
    return ignored | (TOP_LEVEL_IGNORED & set(names) if Path(folder) == ROOT else set())


def _skip_if_offline(step: str, result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode == 0:
        return
    output = result.stdout + result.stderr
    if OFFLINE.search(output):
        last = [line for line in output.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
        pytest.skip(f"{step} needs the package index, which is unreachable: {last[-1] if last else output}")
    pytest.fail(f"{step} failed (exit {result.returncode}):\n{output}")


PIP_OPTIONS = ("--retries", "1", "--timeout", "20", "--disable-pip-version-check")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Builds the wheel from a copy of the checkout, so the checkout gets no build/ folder."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_source_ignored)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *PIP_OPTIONS, "--no-deps", "-w", str(base / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _skip_if_offline("Building the wheel (setuptools in an isolated build environment)", build)
    [wheel] = (base / "dist").glob("daycare-*.whl")
    return Built(wheel, source)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Installs the wheel, with its dependencies from the package index, in a fresh virtualenv."""
    base = tmp_path_factory.mktemp("installed")
    environment = base / "venv"
    venv.create(environment, with_pip=True, clear=True)
    work = base / "work"
    work.mkdir()
    result = Installed(built, environment, work)
    install = subprocess.run(
        [result.bin / "python", "-m", "pip", "install", *PIP_OPTIONS, str(built.wheel)],
        cwd=work,
        env=_environment(work),
        capture_output=True,
        text=True,
        timeout=300,
    )
    _skip_if_offline("Installing the wheel's dependencies", install)
    return result


def test_the_wheel_holds_the_package_and_every_migration_file_and_nothing_else(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    migrations = built.migration_files()
    postgres = built.migration_files("postgres/models")
    assert migrations and migrations[0].startswith("0_")
    assert postgres and postgres[0].startswith("0_")
    assert {f"daycare_migrations/models/{name}" for name in migrations} <= names
    assert "daycare_migrations/__init__.py" in names
    assert {"daycare/__init__.py", "daycare/cli.py", "daycare/storage/migrations/loader.py"} <= names
    # No top-level `migrations` or `tests` package, and no stray file beside the migrations.
    assert {name.split("/")[0] for name in names} == {"daycare", "daycare_migrations", "daycare-0.1.0.dist-info"}
    assert {name for name in names if name.startswith("daycare_migrations/")} == {
        "daycare_migrations/__init__.py",
        *(f"daycare_migrations/models/{name}" for name in migrations),
        *(f"daycare_migrations/postgres/models/{name}" for name in postgres),
    }


def test_the_installed_program_reads_its_code_and_migrations_from_the_virtualenv(installed: Installed) -> None:
    probe = (
        "import daycare, daycare_migrations\n"
        "from daycare.storage.migrations.loader import migrations_dir, migrations_load\n"
        "print(daycare.__file__); print(daycare_migrations.__file__); print(migrations_dir())\n"
        "print(*(migration.path for migration in migrations_load()), sep='\\n')\n"
    )
    result = installed.run(installed.bin / "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.splitlines()]
    venv = installed.venv.resolve()
    for path in paths:
        assert path.resolve().is_relative_to(venv), path
        assert not path.resolve().is_relative_to(ROOT), path
    assert sorted(path.name for path in paths[3:]) == installed.built.migration_files()


def test_the_installed_daycare_upgrades_checks_and_starts_a_legacy_file(installed: Installed) -> None:
    path = installed.work / "populated.db"
    shutil.copyfile(legacy_path("populated.db"), path)  # a WAL file: SQLite writes -wal and -shm beside it
    path.chmod(0o600)
    daycare = installed.bin / "daycare"

    upgrade = installed.run(daycare, "upgrade", "--db", path)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert "Applied 0_" in upgrade.stdout
    check = installed.run(daycare, "db", "check", "--db", path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "the schema matches the migrations it records" in check.stdout

    started = engine_start_stop([daycare, "start", "--db", path], cwd=installed.work, env=_environment(installed.work))
    assert started.startswith(f"daycare.engine: engine started on {path} (schema aerich:"), started
