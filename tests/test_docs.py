"""The examples in docs/ run as they are written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT
from tests.sqlite_files import file_query


def python_blocks(document: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / document).read_text(encoding="utf-8"), re.DOTALL)


def test_the_api_example_runs_on_the_default_database(tmp_path: Path, legacy_copy: Callable[[str], Path]) -> None:
    database = legacy_copy("populated.db")
    before = file_query(database, "SELECT count(*) FROM session_history")[0][0]
    script = tmp_path / "example.py"
    script.write_text(python_blocks("api.md")[0], encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    # The default database of a user whose DAYCARE_DB_URL points at a legacy file.
    env = {**os.environ, "HOME": str(home), "DAYCARE_DB_URL": str(database)}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    owner = file_query(database, "SELECT nametag FROM users WHERE is_owner = 1")[0][0]
    assert f"{owner} (owner):" in result.stdout
    assert "appended a note to " in result.stdout
    assert file_query(database, "SELECT count(*) FROM session_history")[0][0] == before + 1
    assert file_query(database, "SELECT data FROM session_history ORDER BY id DESC LIMIT 1") == [
        ('{"text":"checked by a script"}',)
    ]
    # The legacy file was adopted first, after a backup, as `daycare upgrade` would have.
    assert list(database.parent.glob("populated.db.bak-*"))
