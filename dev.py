#!/usr/bin/env python3
"""Sets up `.venv` and runs the engine or the whole test suite.

    python3 dev.py start   # the engine on the default database (~/.daycare/daycare.db)
    python3 dev.py test    # ruff, mypy on daycare/, pytest (SQLite and PostgreSQL), then the storage and engine
                           # tests on the yielding backend (SQLite only); installs bubblewrap first when it is
                           # missing and apt-get may be used as root, and PostgreSQL when .ci/run requires it

PostgreSQL for the tests: DAYCARE_TEST_POSTGRES_URL, else 127.0.0.1:5432, else a throwaway cluster
(initdb/pg_ctl), else the PostgreSQL half is skipped (tests/postgres_server.py);
DAYCARE_TEST_POSTGRES_REQUIRED=1 makes a missing server a failure.

Extra arguments go to `daycare start` or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def environment_ensure() -> None:
    """Creates the virtualenv and installs the package with its test tools when pyproject.toml or setup.py change."""
    if not (BIN / "python").exists():
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256(b"".join((ROOT / name).read_bytes() for name in ("pyproject.toml", "setup.py"))).hexdigest()
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != digest:
        subprocess.run([BIN / "python", "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True)
        stamp.write_text(digest)


def apt_usable() -> bool:
    """Whether this process may install Debian packages (Linux, root, apt-get present)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(package: str) -> None:
    """`apt-get install` of one package, quietly; updates the package lists first when the install fails."""
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def quiet(*command: str) -> int:
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment).returncode

    install = ("apt-get", "install", "-y", "--no-install-recommends", package)
    if quiet(*install):
        # A fresh container may have no package lists yet.
        quiet("apt-get", "update", "-qq")
        quiet(*install)


def bubblewrap_ensure() -> None:
    """Installs bubblewrap (the process sandbox) when `bwrap` is missing and apt-get may be used as root;
    otherwise carries on, and the sandbox tests skip saying why."""
    if shutil.which("bwrap") or not apt_usable():
        return
    apt_install("bubblewrap")
    if not shutil.which("bwrap"):
        print("dev.py: could not install bubblewrap; the sandbox tests will be skipped", file=sys.stderr)


def postgres_ensure() -> None:
    """When a PostgreSQL server is required (.ci/run) and the tests could find none, installs Debian's postgresql,
    whose initdb/pg_ctl the tests use for a throwaway cluster; tests/postgres_server.py does the finding."""
    if os.environ.get("DAYCARE_TEST_POSTGRES_REQUIRED") != "1" or os.environ.get("DAYCARE_TEST_POSTGRES_URL"):
        return
    with socket.socket() as probe:
        probe.settimeout(2)
        if probe.connect_ex(("127.0.0.1", 5432)) == 0:
            return
    if shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or not apt_usable():
        return
    print("dev.py: no PostgreSQL server or initdb found; installing Debian's postgresql", file=sys.stderr)
    apt_install("postgresql")


def run(*command: str | Path) -> None:
    result = subprocess.run([str(part) for part in command], cwd=ROOT)
    if result.returncode:
        sys.exit(result.returncode)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("start", "test"):
        sys.exit(__doc__)
    environment_ensure()
    if argv[0] == "start":
        os.execv(BIN / "daycare", [str(BIN / "daycare"), "start", *argv[1:]])
    bubblewrap_ensure()
    postgres_ensure()
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy", "daycare")
    run(BIN / "pytest", "-q", *argv[1:])  # every database test on SQLite and on PostgreSQL (tests/conftest.py)
    # Once more on a backend that yields to the event loop around every statement, as an async
    # driver does: the caches must stay right whatever runs in between (see tests/storage/yielding_backend.py).
    # It is a SQLite backend: this run leaves PostgreSQL out.
    os.environ["DAYCARE_TEST_BACKEND"] = "yielding"
    run(BIN / "pytest", "-q", "-m", "not slow", "tests/storage", "tests/engine", *argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
