#!/usr/bin/env python3
"""Sets up `.venv` and runs the engine or the whole test suite.

    python3 dev.py start   # the engine on the default database (~/.daycare/daycare.db)
    python3 dev.py test    # ruff, mypy on daycare/, pytest, then the storage and engine tests on the yielding backend
                           # (installs bubblewrap first when it is missing and apt-get may be used as root)

Extra arguments go to `daycare start` or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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


def bubblewrap_ensure() -> None:
    """Installs bubblewrap (the process sandbox) when `bwrap` is missing and apt-get may be used as root;
    otherwise carries on, and the sandbox tests skip saying why."""
    if (
        shutil.which("bwrap")
        or not sys.platform.startswith("linux")
        or os.geteuid() != 0
        or not shutil.which("apt-get")
    ):
        return
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def quiet(*command: str) -> int:
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment).returncode

    install = ("apt-get", "install", "-y", "--no-install-recommends", "bubblewrap")
    if quiet(*install):
        # A fresh container may have no package lists yet.
        quiet("apt-get", "update", "-qq")
        quiet(*install)
    if not shutil.which("bwrap"):
        print("dev.py: could not install bubblewrap; the sandbox tests will be skipped", file=sys.stderr)


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
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy", "daycare")
    run(BIN / "pytest", "-q", *argv[1:])
    # Once more on a backend that yields to the event loop around every statement, as an async
    # driver does: the caches must stay right whatever runs in between (see tests/storage/yielding_backend.py).
    os.environ["DAYCARE_TEST_BACKEND"] = "yielding"
    run(BIN / "pytest", "-q", "-m", "not slow", "tests/storage", "tests/engine", *argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
