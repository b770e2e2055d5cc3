#!/usr/bin/env python3
"""How long `daycare` takes to start: the CLI, `db status`, and an in-process engine start.

    python bench/cold_start.py                        # 30 rounds, as a table
    python bench/cold_start.py --runs 100             # more rounds
    python bench/cold_start.py --json                 # one JSON object instead of the table
    python bench/cold_start.py --before ../old-copy   # also another copy of the project, e.g. before a change

One up-to-date SQLite file is made first, by starting and stopping an engine once. Then, in
each round, every case runs once for this checkout (and for the `--before` copy), beside its
reference, in an order that rotates from round to round so that drift lands on every side:
- `daycare --help` against `python -c pass` (the interpreter's own start, the floor of any
  Python command);
- `daycare db status --db FILE` against the `sqlite3` CLI reading the same facts (the tables and
  the aerich versions);
- `Engine.start()` on the file, timed inside a fresh process after its imports: the first start
  of the process (as `daycare start` does), then the median of 5 more starts in the same process
  (each after a `stop()`), against plain `sqlite3` in such a process opening the file and reading
  its aerich versions (first, then the median of 5 more).
Times are wall clock in milliseconds: median and p90 of the rounds; a ratio is port over reference.
The commands run with bytecode caching on (PYTHONDONTWRITEBYTECODE unset), as an installed
package has its .pyc files: otherwise every start would compile Daycare's sources again. The
`--before` copy runs with PYTHONPATH pointing at it (its own `migrations/` included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HELP, STATUS = "daycare --help", "daycare db status"
ENGINE_FIRST, ENGINE_LATER = "Engine.start(), first of its process", "Engine.start(), later in the process"
REFERENCES = {
    HELP: "python -c pass",
    STATUS: "sqlite3 FILE 'select ...'",
    ENGINE_FIRST: "sqlite3 open + select, first of its process",
    ENGINE_LATER: "sqlite3 open + select, later in the process",
}
TARGETS_MS = {HELP: 100.0, STATUS: 150.0, ENGINE_FIRST: 20.0, ENGINE_LATER: 20.0}
LATER_STARTS = 5
THIS, BEFORE = "this checkout", "before"

# Run in a fresh process: imports first (not timed), then starts, each followed by a stop (not timed);
# prints the first start and the median of the others, in ms.
ENGINE_RUN = """
import asyncio, json, statistics, sys, time
from daycare.config import config_load
from daycare.engine import Engine

async def main():
    times = []
    for _ in range(1 + int(sys.argv[2])):
        engine = Engine(config_load(db=sys.argv[1]), backup=False)
        began = time.perf_counter()
        await engine.start()
        times.append((time.perf_counter() - began) * 1e3)
        await engine.stop()
    print(json.dumps({"first": times[0], "later": statistics.median(times[1:])}))

asyncio.run(main())
"""

# The reference for an engine start: plain sqlite3 in a fresh process, timed after its import.
SQLITE_RUN = """
import json, sqlite3, statistics, sys, time
times = []
for _ in range(1 + int(sys.argv[2])):
    began = time.perf_counter()
    connection = sqlite3.connect(sys.argv[1])
    connection.execute("SELECT version FROM aerich WHERE app = 'models' ORDER BY id").fetchall()
    connection.close()
    times.append((time.perf_counter() - began) * 1e3)
print(json.dumps({"first": times[0], "later": statistics.median(times[1:])}))
"""

STATUS_SQL = "SELECT name FROM sqlite_master WHERE type = 'table'; SELECT version FROM aerich ORDER BY id;"

Measure = Callable[[], dict[str, float]]  # runs once; returns the milliseconds of each case it timed


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _wall_ms(command: list[str], environ: dict[str, str]) -> float:
    """Runs `command` to its end and returns its wall time; a failure stops the bench."""
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=environ, cwd=environ["HOME"])
    elapsed = (time.perf_counter() - began) * 1e3
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr.decode(errors='replace')}")
    return elapsed


def _engine_ms(command: list[str], environ: dict[str, str]) -> dict[str, float]:
    """Runs an engine timing script; returns its first start and the median of its later ones."""
    done = subprocess.run(command, capture_output=True, env=environ, cwd=environ["HOME"], text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({done.returncode}):\n{done.stderr}")
    times = json.loads(done.stdout.strip().splitlines()[-1])
    return {ENGINE_FIRST: float(times["first"]), ENGINE_LATER: float(times["later"])}


def database_make(folder: Path, environ: dict[str, str]) -> str:
    """An up-to-date file: made by starting and stopping an engine once."""
    path = folder / "daycare.db"
    command = [str(BIN / "python"), "-c", ENGINE_RUN, str(path), "1"]
    subprocess.run(command, check=True, capture_output=True, env=environ, cwd=folder)
    return str(path)


def measures_port(environ: dict[str, str], path: str) -> list[Measure]:
    """The three commands of one copy of the project, run with `environ`."""
    python, daycare, later = str(BIN / "python"), str(BIN / "daycare"), str(LATER_STARTS)
    return [
        lambda: {HELP: _wall_ms([daycare, "--help"], environ)},
        lambda: {STATUS: _wall_ms([daycare, "db", "status", "--db", path], environ)},
        lambda: _engine_ms([python, "-c", ENGINE_RUN, path, later], environ),
    ]


def measures_reference(environ: dict[str, str], path: str, sqlite_cli: str) -> list[Measure]:
    """What each of the three commands is compared with."""
    python, later = str(BIN / "python"), str(LATER_STARTS)
    return [
        lambda: {HELP: _wall_ms([python, "-c", "pass"], environ)},
        lambda: {STATUS: _wall_ms([sqlite_cli, path, STATUS_SQL], environ)},
        lambda: _engine_ms([python, "-c", SQLITE_RUN, path, later], environ),
    ]


def bench_run(runs: int, before: Path | None = None) -> dict[str, object]:
    sqlite_cli = shutil.which("sqlite3")
    if sqlite_cli is None:
        raise SystemExit("bench/cold_start.py needs the sqlite3 command (Debian: apt-get install sqlite3).")
    with tempfile.TemporaryDirectory() as folder:
        # No settings of the user's may leak in: the home is the temporary folder.
        environ = {**os.environ, "HOME": folder, "DAYCARE_HOME": str(Path(folder, ".daycare"))}
        for name in ("DAYCARE_DB_URL", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH"):
            environ.pop(name, None)
        path = database_make(Path(folder), environ)
        sides: dict[str, list[Measure]] = {
            THIS: measures_port(environ, path),
            "reference": measures_reference(environ, path, sqlite_cli),
        }
        if before is not None:
            sides[BEFORE] = measures_port({**environ, "PYTHONPATH": str(before)}, path)
        times: dict[str, dict[str, list[float]]] = {side: {case: [] for case in REFERENCES} for side in sides}
        names = list(sides)
        for side in names:  # one warm-up each: the page cache, .pyc files
            for measure in sides[side]:
                measure()
        for round_number in range(runs):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for kind in range(3):
                for side in order:
                    for case, elapsed in sides[side][kind]().items():
                        times[side][case].append(elapsed)
    return {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs": runs,
        "before": str(before) if before else None,
        "cases": [
            {
                "case": case,
                "reference": reference,
                "target_ms": TARGETS_MS[case],
                **{
                    f"{side}_{statistic}_ms": function(times[side][case])
                    for side in names
                    for statistic, function in (("median", statistics.median), ("p90", _p90))
                },
            }
            for case, reference in REFERENCES.items()
        ],
    }


def table_print(result: dict[str, object]) -> None:
    cases = result["cases"]
    assert isinstance(cases, list)
    before = result["before"] is not None
    print(f"{result['runs']} rounds, every side interleaved; wall ms, median (p90); ratio: median over the reference's")
    print(f"load average before: {result['load_before']}, after: {result['load_after']}")
    if before:
        print(f"before: {result['before']}")
    print()
    header = "| case | this checkout | ratio |" + (" before | ratio |" if before else "") + " reference | ms | target |"
    print(header)
    print("|---|---:|---:|" + ("---:|---:|" if before else "") + "---|---:|---:|")
    for row in cases:
        reference = row["reference_median_ms"]
        cells = [row["case"]]
        for side in (THIS, BEFORE) if before else (THIS,):
            cells.append(f"{row[f'{side}_median_ms']:.1f} ({row[f'{side}_p90_ms']:.1f})")
            cells.append(f"{row[f'{side}_median_ms'] / reference:.1f}x")
        cells += [row["reference"], f"{reference:.1f} ({row['reference_p90_ms']:.1f})", f"<= {row['target_ms']:.0f}"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="rounds (default 30)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--before", type=Path, help="another copy of the project, measured in the same rounds")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.before is not None and not (args.before / "daycare" / "cli.py").is_file():
        parser.error(f"--before {args.before}: no daycare/cli.py there")
    load_before = os.getloadavg()[0]
    result = bench_run(args.runs, args.before.resolve() if args.before else None)
    result["load_before"], result["load_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        table_print(result)


if __name__ == "__main__":
    main()
