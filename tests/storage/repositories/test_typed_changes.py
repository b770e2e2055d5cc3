"""A misspelt or mistyped update field is an error mypy reports, in every repository that updates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# One call per repository with an `update`: a misspelt field on the marked line.
SNIPPET = """
from daycare.storage import Context, Storage


async def updates(storage: Storage, ctx: Context) -> None:
    await storage.agents.update("a", lifecycel="dead")  # agents
    await storage.users.update("u", is_ownr=True)  # users
    await storage.tasks.update(ctx, "t", titel="x")  # tasks
    await storage.cron_tasks.update("c", schedul="* * * * *")  # cron_tasks
    await storage.heartbeat_tasks.update("h", titel="x")  # heartbeat_tasks
    await storage.channels.update("c", leadr="a")  # channels
    await storage.expose_endpoints.update("e", domian="x.example.com")  # expose_endpoints
    await storage.processes.update("p", stauts="running")  # processes
    await storage.system_prompts.update("s", promt="x")  # system_prompts
    await storage.agents.update("a", updated_at="soon")  # agents, wrong type
"""


def test_mypy_reports_every_misspelt_update_field(tmp_path: Path) -> None:
    snippet = tmp_path / "updates.py"
    snippet.write_text(SNIPPET, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(snippet)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = SNIPPET.splitlines()
    reported = {
        lines[int(match.group(1)) - 1].split("# ")[-1]
        for match in re.finditer(r"updates\.py:(\d+): error", result.stdout)
    }
    expected = {line.split("# ")[-1] for line in lines if "# " in line}
    assert reported == expected, result.stdout
