"""The `daycare` command: upgrade, db status, db check and start.

User errors print a few lines and exit 1; they never show a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from daycare.config import Config, config_load
from daycare.engine import Engine
from daycare.storage.db.database import database_close, database_open
from daycare.storage.errors import StorageError
from daycare.storage.migrations.inspection import FileKind, FileState
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.migrate import database_migrate, database_status
from daycare.storage.migrations.schema_check import database_schema_check, schema_report


def _location_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="PATH", help="database file or sqlite:// URL")
    where.add_argument("--settings", metavar="PATH", help="settings.json naming engine.dbPath or engine.dataDir")


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daycare", description="Daycare storage and engine.")
    commands = parser.add_subparsers(dest="command", required=True)
    upgrade = commands.add_parser("upgrade", help="bring the database up to date")
    _location_arguments(upgrade)
    upgrade.add_argument("--no-backup", action="store_true", help="do not write <name>.bak-<time> first")
    db = commands.add_parser("db", help="inspect the database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    _location_arguments(db_commands.add_parser("status", help="fresh, legacy or under Aerich; applied and pending"))
    _location_arguments(db_commands.add_parser("check", help="compare the schema with the expected one"))
    start = commands.add_parser("start", help="run the engine until SIGINT or SIGTERM")
    _location_arguments(start)
    return parser


class ProgressBar:
    """A Progress drawn as `label [#####-----]  50% (5/10)`: redrawn in place on a terminal,
    written once, complete, elsewhere (logs, pipes)."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, interval: float = 0.1) -> None:
        self.stream = stream or sys.stdout
        self.width = width
        self.interval = interval
        self.live = self.stream.isatty()
        self._drawn = 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        finished = done >= total
        now = time.monotonic()
        if not finished and (not self.live or now - self._drawn < self.interval):
            return
        self._drawn = now
        filled = self.width * done // total if total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        percent = 100 * done // total if total else 100
        line = f"{label} [{bar}] {percent:3d}% ({done}/{total})"
        self.stream.write(("\r" + line if self.live else line) + ("\n" if finished else ""))
        self.stream.flush()


async def command_upgrade(config: Config, args: argparse.Namespace) -> int:
    db = await database_open(config.db_location)
    try:
        applied = await database_migrate(db, backup=not args.no_backup, notify=print, progress=ProgressBar())
    finally:
        await database_close(db)
    if applied:
        print(f"Upgraded {db.location.display}: applied {', '.join(applied)}.")
    else:
        print(f"{db.location.display} is up to date.")
    return 0


def _state_text(state: FileState) -> str:
    if state.kind is FileKind.FRESH:
        return "fresh (no tables yet)"
    if state.kind is FileKind.FOREIGN:
        return "not a Daycare file"
    if state.kind is FileKind.AERICH:
        return "under Aerich"
    recorded = len(LEGACY_STEPS) - len(state.legacy_missing)
    text = f"legacy, not yet under Aerich ({recorded} of {len(LEGACY_STEPS)} legacy steps recorded"
    if state.legacy_missing:
        text += f"; missing: {', '.join(state.legacy_missing)}"
    return text + ")"


async def command_status(config: Config, args: argparse.Namespace) -> int:
    db = await database_open(config.db_location, create=False)
    try:
        status = await database_status(db)
    finally:
        await database_close(db)
    print(f"Database: {db.location.display} (from {config.source})")
    print(f"State:    {_state_text(status.state)}")
    print(f"Applied:  {', '.join(status.applied) or 'none'}")
    print(f"Pending:  {', '.join(status.pending) or 'none'}")
    return 0


async def command_check(config: Config, args: argparse.Namespace) -> int:
    db = await database_open(config.db_location, create=False)
    try:
        status = await database_status(db)
        issues = [] if status.state.kind is FileKind.FRESH else await database_schema_check(db)
    finally:
        await database_close(db)
    if status.state.kind is FileKind.FRESH:
        print(f"{db.location.display} has no tables yet; run daycare upgrade to create them.")
        return 0
    if issues:
        print(f"Schema drift in {db.location.display}:")
        print(schema_report(issues))
        return 1
    print(f"{db.location.display}: the schema matches the migrations it records.")
    return 0


async def command_start(config: Config, args: argparse.Namespace) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    log = logging.getLogger("daycare.engine")
    async with Engine(config) as engine:
        log.info("%s", (await engine.summary()).line())
        await stopping.wait()
        log.info("stopping the engine")
    return 0


COMMANDS: dict[tuple[str, str | None], Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    ("upgrade", None): command_upgrade,
    ("db", "status"): command_status,
    ("db", "check"): command_check,
    ("start", None): command_start,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit code."""
    args = parser_build().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        config = config_load(db=args.db, settings=args.settings)
        command = COMMANDS[(args.command, getattr(args, "db_command", None))]
        return asyncio.run(command(config, args))
    except StorageError as exc:
        print(f"daycare: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
