#!/usr/bin/env python3
"""Time and peak memory of upgrading a partial-history legacy file with 100,000 history rows.

    python bench/upgrade_partial.py                  # 100,000 rows, 3,000 of them rlm snapshots
    python bench/upgrade_partial.py --rows 20000 --snapshots 500 --snapshot-kb 4
    python bench/upgrade_partial.py --json
    python bench/upgrade_partial.py --dir /var/tmp     # the scratch file on another disk

The file stops after legacy step 26 (`--stop-after`; before both table rebuilds and the
snapshot cleanup), like a 2026-02-26 install: the ported steps 1-26 build it, then plain sqlite3 fills it with
history (a mix of record types; `--snapshots` rlm_tool_call rows carry an embedded snapshot
of `--snapshot-kb` KB and a non-cuid2 snapshotId), 200 cron and 200 heartbeat triggers (half
without a task) and their tasks. The upgrade (`database_migrate`, backup included) then runs
in a fresh process, which reports its wall time and its peak RSS (`ru_maxrss`), next to the
RSS the same process had right before upgrading.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daycare.storage.db.database import database_close, database_open  # noqa: E402
from daycare.storage.migrations.legacy import LEGACY_STEPS  # noqa: E402
from daycare.storage.migrations.legacy.catch_up import legacy_catch_up  # noqa: E402
from daycare.storage.migrations.migrate import database_migrate  # noqa: E402
from daycare.storage.migrations.progress import progress_none  # noqa: E402

STOP_AFTER = LEGACY_STEPS.index("20260226_rename_usertag_to_nametag") + 1


async def chain_build(path: Path, stop_after: int) -> None:
    db = await database_open(path)
    try:
        await legacy_catch_up(db.connection(), LEGACY_STEPS[:stop_after], notify=lambda _: None, progress=progress_none)
    finally:
        await database_close(db)


def fill(path: Path, rows: int, snapshots: int, snapshot_kb: int) -> None:
    """Adds agents, sessions, history and triggers with plain sqlite3 (the bench is outside daycare/)."""
    rng = random.Random(7)
    connection = sqlite3.connect(path)
    owner = connection.execute("SELECT id FROM users WHERE is_owner = 1").fetchone()[0]
    with connection:
        for agent in range(50):
            connection.execute(
                "INSERT INTO agents (id, type, descriptor, permissions, created_at, updated_at, user_id)"
                " VALUES (?, 'system', '{}', '{}', 1, 1, ?)",
                [f"agent-{agent}", owner],
            )
            connection.execute(
                "INSERT INTO sessions (id, agent_id, created_at) VALUES (?, ?, 1)",
                [f"session-{agent}", f"agent-{agent}"],
            )
        snapshot = "Q" * (snapshot_kb * 1024)
        snapshot_at = set(rng.sample(range(rows), snapshots))
        history = []
        for index in range(rows):
            if index in snapshot_at:
                kind = "rlm_tool_call"
                data = {"toolCallId": f"t{index}", "snapshot": snapshot, "snapshotId": "AQID", "toolName": "read"}
            else:
                kind = rng.choice(["user_message", "assistant_message", "note", "rlm_tool_call", "rlm_start"])
                data = {"text": f"message {index} " + "x" * rng.randint(20, 600)}
            history.append((f"session-{index % 50}", kind, index, json.dumps(data, separators=(",", ":"))))
        connection.executemany("INSERT INTO session_history (session_id, type, at, data) VALUES (?, ?, ?, ?)", history)
        for index in range(200):
            linked = index % 2 == 0
            if linked:
                connection.execute(
                    "INSERT INTO tasks (id, user_id, title, code, created_at, updated_at)"
                    " VALUES (?, ?, ?, 'x()', 1, 1)",
                    [f"task-{index}", owner, f"Task {index}"],
                )
            connection.execute(
                "INSERT INTO tasks_cron (id, task_uid, task_id, user_id, name, schedule, code, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, '0 * * * *', 'prompt', 1, 1)",
                [f"cron-{index}", f"uid{index:021d}", f"task-{index}" if linked else None, owner, f"Cron {index}"],
            )
            connection.execute(
                "INSERT INTO tasks_heartbeat (id, task_id, user_id, title, code, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'prompt', 1, 1)",
                [f"beat-{index}", f"task-{index}" if linked else None, owner, f"Beat {index}"],
            )
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def memory_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB. Linux keeps ru_maxrss across exec, so the
    peak comes from /proc (VmHWM) where there is one."""
    status = Path("/proc/self/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak, peak


def verify(path: Path) -> dict[str, int]:
    """What the upgraded file holds, to show that the upgrade did the work it was timed on."""
    connection = sqlite3.connect(path)
    try:
        count = lambda sql: connection.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "history_rows": count("SELECT COUNT(*) FROM session_history"),
            "snapshots_left": count("SELECT COUNT(*) FROM session_history WHERE instr(data, '\"snapshot\"') > 0"),
            "tasks": count("SELECT COUNT(*) FROM tasks"),
            "triggers_without_task": count(
                "SELECT (SELECT COUNT(*) FROM tasks_cron c LEFT JOIN tasks t"
                " ON t.user_id = c.user_id AND t.id = c.task_id WHERE t.id IS NULL)"
                " + (SELECT COUNT(*) FROM tasks_heartbeat h LEFT JOIN tasks t"
                " ON t.user_id = h.user_id AND t.id = h.task_id WHERE t.id IS NULL)"
            ),
        }
    finally:
        connection.close()


async def upgrade(path: Path) -> dict[str, object]:
    db = await database_open(path)
    rss_before, _ = memory_mb()
    started = time.perf_counter()
    try:
        applied = await database_migrate(db, notify=lambda _: None)
    finally:
        await database_close(db)
    seconds = time.perf_counter() - started
    _, peak = memory_mb()
    return {"seconds": round(seconds, 2), "rss_before_mb": round(rss_before, 1), "rss_peak_mb": round(peak, 1),
            "steps_applied": len(applied), **verify(path)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--snapshots", type=int, default=3_000)
    parser.add_argument("--snapshot-kb", type=int, default=8)
    parser.add_argument("--stop-after", type=int, default=STOP_AFTER, help="last legacy step in the file (20-32)")
    parser.add_argument("--dir", help="folder for the scratch file (default: the system temp folder)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--upgrade", metavar="PATH", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.upgrade:
        print(json.dumps(asyncio.run(upgrade(Path(args.upgrade)))))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "daycare.db"
        asyncio.run(chain_build(path, args.stop_after))
        fill(path, args.rows, args.snapshots, args.snapshot_kb)
        size_mb = path.stat().st_size / 2**20
        child = subprocess.run(
            [sys.executable, __file__, "--upgrade", str(path)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        result = json.loads(child.stdout)
        after_mb = path.stat().st_size / 2**20 + (path.with_name(path.name + "-wal").stat().st_size / 2**20
                                                  if path.with_name(path.name + "-wal").exists() else 0)  # fmt: skip
    result.update(rows=args.rows, snapshots=args.snapshots, snapshot_kb=args.snapshot_kb, stop_after=args.stop_after,
                  file_mb_before=round(size_mb, 1), file_mb_after=round(after_mb, 1), cpus=os.cpu_count())  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    print(f"partial file (steps 1-{args.stop_after}): {args.rows:,} history rows, {args.snapshots:,} with a "
          f"{args.snapshot_kb} KB snapshot; {size_mb:.1f} MB")  # fmt: skip
    print(f"upgrade ({result['steps_applied']} steps incl. the baseline, backup included): {result['seconds']} s")
    print(f"peak RSS {result['rss_peak_mb']} MB (the process held {result['rss_before_mb']} MB before upgrading)")
    print(
        f"afterwards: {result['history_rows']:,} history rows, {result['snapshots_left']} snapshots left, "
        f"{result['tasks']} tasks, {result['triggers_without_task']} triggers without a task"
    )


if __name__ == "__main__":
    main()
