#!/usr/bin/env python3
"""Peak memory of importing one legacy agent whose `history.jsonl` is about 300 MB.

    python bench/import_history.py                 # a 300 MB history in a scratch folder
    python bench/import_history.py --mb 50
    python bench/import_history.py --dir /var/tmp  # the scratch folder on another disk

A new database beside an `agents/` folder runs the whole legacy chain, its file import
included (`database_migrate`). The history holds ~1 KB lines, with a `reset` marker every
5,000 lines. The import streams the file line by line, so the peak RSS (`ru_maxrss`) stays
close to the RSS the process had before the upgrade, whatever the size of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daycare.storage.db.database import database_close, database_open  # noqa: E402
from daycare.storage.migrations.migrate import database_migrate  # noqa: E402


def history_write(folder: Path, megabytes: int) -> int:
    """Writes one agent with a history of about `megabytes` MB; returns its line count."""
    agent = folder / "agents" / "big"
    agent.mkdir(parents=True)
    (agent / "descriptor.json").write_text(json.dumps({"type": "user", "connector": "t", "userId": "1"}))
    (agent / "state.json").write_text(json.dumps({"createdAt": 1, "updatedAt": 2, "state": "sleeping"}))
    text, written, lines = "x" * 900, 0, 0
    with open(agent / "history.jsonl", "w", encoding="utf-8") as out:
        while written < megabytes * 1024 * 1024:
            at = 1700000000000 + lines
            record = {"type": "reset", "at": at} if lines % 5000 == 0 else {"type": "note", "at": at, "text": text}
            line = json.dumps(record) + "\n"
            out.write(line)
            written += len(line)
            lines += 1
    return lines


async def upgrade(path: Path) -> int:
    db = await database_open(path)
    try:
        await database_migrate(db, notify=lambda _: None)
        found = await db.connection().execute_query_dict("SELECT COUNT(*) AS n FROM session_history")
    finally:
        await database_close(db)
    return int(found[0]["n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=300, help="size of the history file in MB")
    parser.add_argument("--dir", default=None, help="where the scratch folder goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        folder = Path(scratch)
        history_write(folder, args.mb)
        size = (folder / "agents" / "big" / "history.jsonl").stat().st_size
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.monotonic()
        rows = asyncio.run(upgrade(folder / "daycare.db"))
        elapsed = time.monotonic() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"history.jsonl {size / 1e6:.0f} MB, {rows} history rows imported in {elapsed:.1f} s;"
        f" peak RSS {peak / 1024:.0f} MB (before the upgrade: {before / 1024:.0f} MB)"
    )


if __name__ == "__main__":
    main()
