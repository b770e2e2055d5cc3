"""The `daycare` command: upgrade, db status, db check, db copy, start and restore.

User errors print a few lines and exit 1; they never show a traceback. The exit codes are in
EXIT_CODES, which `daycare --help` shows. Log lines go to stderr with a timestamp.

Each command imports what it uses when it runs: `daycare --help`, `--version` and wrong arguments
load argparse and nothing of the storage stack (Tortoise, Aerich, the models, the engine), which
takes most of a command's start-up time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from daycare.storage.errors import StorageError  # a small module: `daycare.storage` loads its names lazily

if TYPE_CHECKING:
    from daycare.config import Config
    from daycare.storage.db.database import Database
    from daycare.storage.db.location import DatabaseLocation
    from daycare.storage.migrations.inspection import FileState

EXIT_OLDER_LEGACY = 3  # db check: a legacy file that stopped part-way; daycare upgrade will bring it up to date
EXIT_UNREADABLE_ROWS = 4  # db check --data: rows that cannot be read (the engine skips them)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_CODES = f"""exit codes:
  0    done (db check: the schema matches, or the file has no tables yet)
  1    an error, explained in a few lines (db check: schema drift, or not a Daycare file)
  2    wrong arguments
  {EXIT_OLDER_LEGACY}    db check: an older legacy file; daycare upgrade will upgrade it
  {EXIT_UNREADABLE_ROWS}    db check --data: rows that cannot be read, listed by table and key
  {EXIT_INTERRUPTED}  interrupted by Ctrl-C (129, 143: by SIGHUP, SIGTERM while starting); rerunning continues
"""


class CommandInterrupted(Exception):
    """A signal ended a command early; the message says what state it left the file in."""

    def __init__(self, message: str, code: int = EXIT_INTERRUPTED) -> None:
        super().__init__(message)
        self.code = code


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("daycare")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse._VersionAction):
    """`--version`, reading the installed version only when asked (importlib.metadata is slow to load)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        self.version = f"daycare {_version()}"
        super().__call__(parser, namespace, values, option_string)


def _location_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="PATH", help="database file, sqlite:// URL or postgres:// URL")
    where.add_argument(
        "--settings", metavar="PATH", help="settings.json naming engine.db.url, engine.dbPath or engine.dataDir"
    )


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daycare",
        description="Daycare storage and engine.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    upgrade = commands.add_parser("upgrade", help="bring the database up to date")
    _location_arguments(upgrade)
    upgrade.add_argument(
        "--no-backup",
        action="store_true",
        help="do not write <name>.bak-<time> (PostgreSQL: a pg_dump archive in <daycare home>/backups/) first",
    )
    db = commands.add_parser("db", help="inspect the database")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    _location_arguments(db_commands.add_parser("status", help="fresh, legacy or under Aerich; applied and pending"))
    check = db_commands.add_parser("check", help="compare the schema with the expected one")
    _location_arguments(check)
    check.add_argument("--data", action="store_true", help="then read every row and list those that cannot be read")
    copy = db_commands.add_parser("copy", help="copy every row into a new database (SQLite to PostgreSQL, or back)")
    copy.add_argument(
        "--from", dest="source", metavar="SRC", required=True, help="the database to copy (path or URL), read only"
    )
    copy.add_argument(
        "--to",
        dest="target",
        metavar="DST",
        required=True,
        help="a new file, or an empty PostgreSQL database or schema",
    )
    copy.set_defaults(db=None, settings=None)  # it names its databases itself
    start = commands.add_parser("start", help="run the engine until SIGINT, SIGTERM or SIGHUP")
    _location_arguments(start)
    restore = commands.add_parser("restore", help="put a backup in place of the database (the current file is kept)")
    restore.add_argument("backup", metavar="BACKUP", help="a backup file, e.g. daycare.db.bak-<time>")
    _location_arguments(restore)
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
    import asyncio
    import contextlib

    from daycare.storage.db.database import database_close, database_open, database_writable_check
    from daycare.storage.db.location import database_location
    from daycare.storage.db.lock import UPGRADE, database_lock_wait
    from daycare.storage.migrations.legacy.context import LegacySkips
    from daycare.storage.migrations.migrate import database_migrate

    location = database_location(config.db_location)
    skipped = LegacySkips()
    migrating = False
    try:
        # Held for the whole upgrade; another upgrade is waited for, a running engine refuses it.
        async with await database_lock_wait(location, UPGRADE, notify=print) or contextlib.nullcontext():
            database_writable_check(location.path)  # before SQLite opens it and leaves read-only -wal and -shm
            db = await database_open(location)
            try:
                migrating = True
                applied = await database_migrate(
                    db, backup=not args.no_backup, notify=print, progress=ProgressBar(), skipped=skipped
                )
            finally:
                await database_close(db)
    except asyncio.CancelledError:
        if not migrating:
            raise CommandInterrupted(f"interrupted; nothing was changed in {location.display}.") from None
        raise CommandInterrupted(await _interrupted_text(location, "interrupted.", "daycare upgrade")) from None
    if not applied:
        print(f"{location.display} is up to date.")
        return 0
    skips = f"; skipped {skipped.count} piece(s) of legacy data (a warning above names each)" if skipped.count else ""
    print(f"Upgraded {location.display}: applied {', '.join(applied)}{skips}.")
    return 0


async def _interrupted_text(location: DatabaseLocation, headline: str, command: str) -> str:
    """What an interrupted upgrade (or engine start) left: the file's state, and that a rerun continues."""
    from daycare.storage.db.database import database_close, database_open
    from daycare.storage.migrations.migrate import database_status

    try:
        db = await database_open(location, read_only=True, querysets=False)  # catalog reads only
        try:
            status = await database_status(db)
        finally:
            await database_close(db)
        now = f"{location.display} is now {_state_text(status.state)}; pending: {', '.join(status.pending) or 'none'}."
    except StorageError as exc:
        now = f"Its state could not be read: {exc.problem}"
    what = "The database" if location.server is not None else "The file"
    return "\n".join(
        (
            f"{headline} {what} is consistent: each legacy step and each migration commits on its own (a long"
            " step in batches), so what finished is kept and what was running was rolled back.",
            now,
            f"Run {command} again to continue from there.",
        )
    )


def _state_text(state: FileState) -> str:
    from daycare.storage.migrations.inspection import FileKind
    from daycare.storage.migrations.legacy import LEGACY_STEPS

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
    from daycare.storage.db.database import database_close, database_open
    from daycare.storage.migrations.migrate import database_status

    db = await database_open(config.db_location, read_only=True, querysets=False)  # catalog reads only
    try:
        status = await database_status(db)
        engines = await _engines_text(db)
    finally:
        await database_close(db)
    print(f"Database: {db.location.display} (from {config.source})")
    print(f"State:    {_state_text(status.state)}")
    print(f"Applied:  {', '.join(status.applied) or 'none'}")
    if status.unknown:
        print(f"Unknown:  {', '.join(status.unknown)} (applied by a newer Daycare)")
        print("Pending:  cannot tell: a newer Daycare migrated this file; upgrade daycare to open it")
    else:
        print(f"Pending:  {', '.join(status.pending) or 'none'}")
    for line in engines:
        print(line)
    return 0


async def _engines_text(db: Database) -> list[str]:
    """PostgreSQL: the engines on the schema (pg_stat_activity, pg_locks), which one leads; SQLite: nothing."""
    if db.location.server is None:
        return []
    from daycare.storage.db.coordination import engines_connected

    engines = await engines_connected(db)
    if not engines:
        return ["Engines:  none connected"]
    shared = " (a shared database)" if any(engine.shared for engine in engines) else ""
    lines = [f"Engines:  {len(engines)} connected{shared}:"]
    lines += [f"  - {engine.describe()}" for engine in engines]
    return lines


async def command_check(config: Config, args: argparse.Namespace) -> int:
    from daycare.storage.db.database import database_close, database_open
    from daycare.storage.migrations.legacy import LEGACY_STEPS
    from daycare.storage.migrations.migrate import CheckOutcome, database_check
    from daycare.storage.migrations.schema_check import schema_report

    db = await database_open(config.db_location, read_only=True, querysets=False)  # catalog reads only
    try:
        check = await database_check(db)
    finally:
        await database_close(db)
    where = db.location.display
    if check.outcome is CheckOutcome.FRESH:
        print(f"{where} has no tables yet; run daycare upgrade to create them.")
        return 0
    if check.outcome is CheckOutcome.OLDER_LEGACY:
        recorded = len(LEGACY_STEPS) - len(check.status.state.legacy_missing)
        print(f"{where} is an older legacy file ({recorded} of {len(LEGACY_STEPS)} legacy steps recorded).")
        print("daycare upgrade will upgrade it (after a backup); its schema is checked once it is up to date.")
        return EXIT_OLDER_LEGACY
    if check.outcome is CheckOutcome.DRIFT:
        print(f"Schema drift in {where}:")
        print(schema_report(check.issues))
        return 1
    print(f"{where}: the schema matches the migrations it records.")
    if check.status.pending:
        print(f"Pending: {', '.join(check.status.pending)}; daycare upgrade applies them.")
    if args.data:
        return await command_check_data(config)
    return 0


async def command_check_data(config: Config) -> int:
    """The data pass of `db check --data` (after the schema matched): lists the rows reads skip."""
    from daycare.storage.db.database import database_close, database_open
    from daycare.storage.repositories.data_check import data_report, database_data_check

    db = await database_open(config.db_location, read_only=True)
    try:
        unreadable = await database_data_check(db)
    finally:
        await database_close(db)
    if unreadable:
        print(f"{len(unreadable)} row(s) cannot be read; the engine skips them:")
        print(data_report(unreadable))
        return EXIT_UNREADABLE_ROWS
    print(f"{db.location.display}: every row can be read.")
    return 0


async def command_start(config: Config, args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from daycare.engine import Engine
    from daycare.storage.db.location import database_location

    stopping = asyncio.Event()
    received: list[signal.Signals] = []
    starting = asyncio.current_task()
    engine = Engine(config)

    def stop(signum: signal.Signals) -> None:
        received.append(signum)
        if starting is not None and len(received) == 1 and not stopping.is_set():
            starting.cancel()  # still starting: stop at once, start() undoes what it did
        stopping.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop, signum)
    log = logging.getLogger("daycare.engine")
    try:
        await engine.start()
    except asyncio.CancelledError:
        if not received:
            raise
        headline = f"{received[0].name} while starting: the engine stopped before it ran."
        text = await _interrupted_text(database_location(config.db_location), headline, "daycare start")
        raise CommandInterrupted(text, 128 + received[0]) from None
    starting = None
    try:
        log.info("%s", (await engine.summary()).line())
        # Until a signal, or until the engine stops by itself (it lost its PostgreSQL lock).
        waits = {asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(engine.failed.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if not stopping.is_set() and engine.failure is not None:
            raise StorageError(engine.failure, "Start it again once the database server can be reached.")
        log.info("stopping the engine (%s)", received[0].name if received else "stop requested")
    finally:
        await engine.stop()
    return 0


async def command_restore(config: Config, args: argparse.Namespace) -> int:
    from daycare.storage.migrations.restore import database_restore

    restored = await database_restore(args.backup, config.db_location)
    print("\n".join(restored.lines()))
    return 0


async def command_copy(config: Config, args: argparse.Namespace) -> int:
    import asyncio

    from daycare.storage.db.location import database_location
    from daycare.storage.migrations.copy import database_copy

    source, target = database_location(args.source), database_location(args.target)
    try:
        copied = await database_copy(source, target, notify=print, progress=ProgressBar())
    except asyncio.CancelledError:
        raise CommandInterrupted(
            f"interrupted; nothing was copied: the copy's transaction on {target.display} was rolled back."
        ) from None
    except StorageError:
        raise
    except Exception as exc:  # met outside the copy's own checks: a lost server, a full disk
        raise _copy_failure(source, target, exc) from None
    print("\n".join(copied.lines()))
    return 0


def _copy_failure(source: DatabaseLocation, target: DatabaseLocation, exc: Exception) -> StorageError:
    """What a database error met by `db copy` means, for whichever side it can be told of; re-raises a defect."""
    from daycare.storage.db.database import database_failure

    outcome = "Nothing was copied"
    for location in (target, source):
        if location.server is not None:
            failure = postgres_failure(location, exc, outcome=outcome)
        else:
            failure = database_failure(location.path, exc, outcome=outcome) if location.path else None
        if failure is not None:
            return failure
    raise exc


COMMANDS: dict[tuple[str, str | None], Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    ("upgrade", None): command_upgrade,
    ("db", "status"): command_status,
    ("db", "check"): command_check,
    ("db", "copy"): command_copy,
    ("start", None): command_start,
    ("restore", None): command_restore,
}


def command_load(argv: Sequence[str] | None = None) -> Callable[[], int]:
    """Parses `argv` (default: the process's), then imports what commands run on; returns the call that runs it.

    `--help`, `--version` and wrong arguments exit while parsing, before any of the storage stack
    is imported. `daycare.__main__` calls this inside its guard against Ctrl-C while loading.
    """
    args = parser_build().parse_args(argv)
    import asyncio
    import logging

    from tortoise.exceptions import BaseORMException

    from daycare.config import config_load
    from daycare.storage.db.database import database_failure
    from daycare.storage.db.location import database_location

    def run() -> int:
        """Runs the command; a user error becomes a few lines on stderr and an exit code."""
        path = None
        location = None
        try:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
            config = config_load(db=args.db, settings=args.settings)
            location = database_location(config.db_location)
            path = location.path
            command = COMMANDS[(args.command, getattr(args, "db_command", None))]
            return asyncio.run(command(config, args))
        except StorageError as exc:
            print(f"daycare: {exc}", file=sys.stderr)
            return 1
        except BaseORMException as exc:
            # A damaged file, a full disk or a read-only file met after the open; anything else is a defect.
            if location is not None and location.server is not None:
                return _postgres_failure_report(location, exc, args)
            if path is None:
                raise
            outcome = "What had completed is kept and the change that failed was rolled back"
            if args.command == "db":
                outcome = "The file was left as it was"
            failure = database_failure(path, exc, outcome=outcome)
            if failure is None:
                raise
            print(f"daycare: {failure}", file=sys.stderr)
            return 1
        except CommandInterrupted as exc:
            print(f"daycare: {exc}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            print("daycare: interrupted.", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:
            # On PostgreSQL the driver's own errors (a lost connection, a server shutting down) reach here.
            if location is None or location.server is None:
                raise
            return _postgres_failure_report(location, exc, args)

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit code."""
    return command_load(argv)()


def _postgres_failure_report(location: DatabaseLocation, exc: Exception, args: argparse.Namespace) -> int:
    """Prints what a PostgreSQL error met after connecting means and returns 1; re-raises a defect."""
    outcome = "What had completed is kept and the change that failed was rolled back"
    if args.command == "db":
        outcome = "The database was left as it was"
    failure = postgres_failure(location, exc, outcome=outcome)
    if failure is None:
        raise exc
    print(f"daycare: {failure}", file=sys.stderr)
    return 1


def postgres_failure(location: DatabaseLocation, exc: BaseException, *, outcome: str) -> StorageError | None:
    """The error to show for `exc`, met on the PostgreSQL database at `location`; None for a defect.

    A lost connection, a server that shuts down or refuses a new connection, a full disk, missing
    privileges and a read-only server each say so; anything else (a bad statement) is a defect.
    """
    import asyncpg  # only on PostgreSQL
    from tortoise.exceptions import BaseORMException

    from daycare.storage.db.postgres_backend import postgres_connect_failure

    where = location.display
    cause: BaseException = exc
    while isinstance(cause, BaseORMException) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, (asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError, ConnectionError)):
        return StorageError(
            f"Lost the connection to the PostgreSQL server ({where}): {cause}.",
            f"{outcome}. Check that the server runs, then run the command again.",
        )
    if isinstance(cause, (asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, OSError, TimeoutError)):
        return postgres_connect_failure(location, cause)
    if isinstance(cause, (asyncpg.DiskFullError, asyncpg.InsufficientResourcesError)):
        return StorageError(f"The PostgreSQL server ({where}) is out of resources: {cause}.", f"{outcome}.")
    if isinstance(cause, asyncpg.InsufficientPrivilegeError):
        return StorageError(
            f"The PostgreSQL user lacks a privilege on {where}: {cause}.",
            f"{outcome}. Grant the user the rights on the database and its schema (CREATE, USAGE, and on the tables).",
        )
    if isinstance(cause, asyncpg.ReadOnlySQLTransactionError):
        return StorageError(
            f"The PostgreSQL server ({where}) accepts no writes: {cause}.",
            f"{outcome}. A standby (replica) cannot be written; point the URL at the primary.",
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
