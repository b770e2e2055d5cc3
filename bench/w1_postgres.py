"""W1 on PostgreSQL (`bench/w1.py --db postgres://...`): the port against plain asyncpg.

The port runs on a fresh schema `bench_<hex>` of the given database, migrated with the
PostgreSQL chain; the reference gets its own schema `bench_ref_<hex>`, migrated the same way,
so both write into equal tables. Every schema the bench makes is dropped at the end.

The reference is one plain asyncpg connection sending the statements the port sends, with the
same transactions: `async with conn.transaction()` where the repositories open one (an agent
with its session, a user with its connector key), and autocommit where they run one statement
(an append, an inbox upsert, a read), which on PostgreSQL is one transaction too. Before the
timed runs, both sides do two units of every operation on scratch schemas with asyncpg's
statements traced, and the bench stops unless they sent the same SQL in the same order (aside
from asyncpg's pool reset query, which the port's client sends whenever a connection goes back
through asyncpg's pool; the table counts it apart). The cached agent reads have
no database work on the port side; their reference reads the row, as on SQLite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.connection import Connection
from w1 import AGENTS, INBOX_ITEMS, PortRun, Result, agent_build, machine_describe, operations_interleave

from daycare.storage.db.database import Database, database_close, database_open, postgres_connect_arguments
from daycare.storage.db.location import database_location
from daycare.storage.facade import Storage
from daycare.storage.identifiers import cuid_create, nametag_generate
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.agents import AgentRecord

PROBE_UNITS = 2  # units of each operation in the traced comparison
CACHED = frozenset({"find"})  # served from the port's cache: its reference reads the row, as on SQLite

# The statements the port sends (pypika-tortoise writes them from the models); the traced
# probe checks that they are still exactly these.
AGENT_UPSERT = (
    'INSERT INTO "agents" ("id","user_id","type","descriptor","active_session_id","permissions","tokens","stats",'
    '"lifecycle","created_at","updated_at") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT ("id") DO UPDATE '
    'SET "user_id"=EXCLUDED."user_id","type"=EXCLUDED."type","descriptor"=EXCLUDED."descriptor",'
    '"active_session_id"=EXCLUDED."active_session_id","permissions"=EXCLUDED."permissions","tokens"=EXCLUDED."tokens",'
    '"stats"=EXCLUDED."stats","lifecycle"=EXCLUDED."lifecycle","created_at"=EXCLUDED."created_at",'
    '"updated_at"=EXCLUDED."updated_at"'
)
SESSION_INSERT = (
    'INSERT INTO "sessions" ("id","agent_id","inference_session_id","created_at","reset_message") '
    "VALUES ($1,$2,$3,$4,$5)"
)
HISTORY_INSERT = 'INSERT INTO "session_history" ("session_id","type","at","data") VALUES ($1,$2,$3,$4) RETURNING "id"'
INBOX_UPSERT = (
    'INSERT INTO "inbox" ("id","agent_id","posted_at","type","data") VALUES ($1,$2,$3,$4,$5) ON CONFLICT ("id") '
    'DO UPDATE SET "agent_id"=EXCLUDED."agent_id","posted_at"=EXCLUDED."posted_at","type"=EXCLUDED."type",'
    '"data"=EXCLUDED."data"'
)
AGENT_BY_ID = (
    'SELECT "id","user_id","type","descriptor","active_session_id","permissions","tokens","stats","lifecycle",'
    '"created_at","updated_at" FROM "agents" WHERE "id"=$1 LIMIT $2'
)
HISTORY_BY_SESSION = 'SELECT "type","at","data" FROM "session_history" WHERE "session_id"=$1 ORDER BY "id"'
USER_ID_BY_KEY = 'SELECT "user_id" FROM "user_connector_keys" WHERE "connector_key"=$1 LIMIT $2'
ANY_USER = 'SELECT "id" FROM "users" LIMIT $1'
USER_INSERT = (
    'INSERT INTO "users" ("id","is_owner","parent_user_id","name","nametag","created_at","updated_at") '
    "VALUES ($1,$2,$3,$4,$5,$6,$7)"
)
KEY_INSERT = 'INSERT INTO "user_connector_keys" ("user_id","connector_key") VALUES ($1,$2) RETURNING "id"'


async def agent_with_session_insert(
    connection: Connection, agent: AgentRecord, session_id: str, dumps: Callable[[Any], str]
) -> None:
    """The statements of `create_agent_with_session`, as plain asyncpg sends them: the agent with its session."""
    await connection.execute(
        AGENT_UPSERT,
        agent.id,
        agent.user_id,
        agent.type,
        dumps(agent.descriptor),
        session_id,
        dumps(agent.permissions),
        None,
        dumps(agent.stats),
        agent.lifecycle,
        agent.created_at,
        agent.updated_at,
    )
    await connection.execute(SESSION_INSERT, session_id, agent.id, None, agent.created_at, None)


@dataclass
class Server:
    """The server and database of `--db`, and what this run made in it."""

    url: str  # as given, without ?schema=
    connect: dict[str, Any]  # asyncpg.connect keywords
    schemas: list[str] = field(default_factory=list)  # created by this run; dropped at the end

    def schema_url(self, schema: str) -> str:
        parts = urlsplit(self.url)
        query = urlencode([*parse_qsl(parts.query), ("schema", schema)])
        return urlunsplit(parts._replace(query=query))

    async def admin(self) -> Connection:
        """A plain connection to the database; SystemExit saying what to do when there is none."""
        where = f"{self.connect['host']}:{self.connect['port']}"
        try:
            return await asyncpg.connect(**self.connect)
        except asyncpg.InvalidCatalogNameError:
            database, user = self.connect["database"], self.connect["user"]
            login = f" -U {user}" if user else ""
            raise SystemExit(
                f"The database {database} does not exist on {where}: "
                f"createdb -h {self.connect['host']} -p {self.connect['port']}{login} {database}"
            ) from None
        except (OSError, asyncpg.PostgresError) as error:
            raise SystemExit(f"Cannot connect to the PostgreSQL server at {where}: {error}") from None


def server_parse(url: str) -> Server:
    """The server of a postgres:// URL; ValueError for one that names a schema (the bench makes its own)."""
    location = database_location(url)
    if location.server is None:
        raise ValueError(f"not a PostgreSQL URL: {url}")
    if location.schema is not None:
        raise ValueError("drop ?schema= from the URL: the bench creates (and drops) its own schemas")
    return Server(url, postgres_connect_arguments(location))


async def schema_migrated(server: Server, prefix: str) -> Database:
    """A new schema `<prefix>_<hex>`, migrated with the PostgreSQL chain, open through the port."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    server.schemas.append(schema)
    db = await database_open(server.schema_url(schema))
    try:
        await database_migrate(db, backup=False)
    except BaseException:
        await database_close(db)
        raise
    return db


async def schemas_drop(server: Server) -> None:
    if not server.schemas:
        return
    admin = await server.admin()
    try:
        for schema in server.schemas:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await admin.close()
    server.schemas.clear()


async def owner_id_read(connection: Connection) -> str:
    """The bootstrap owner's id (the setup depends on no repository method)."""
    owner_id = await connection.fetchval('SELECT "id" FROM "users" WHERE "is_owner" ORDER BY "id" LIMIT 1')
    if owner_id is None:
        raise RuntimeError("the migrated schema has no owner user")
    return str(owner_id)


async def owner_of(server: Server, db: Database) -> str:
    """The owner's id in `db`'s schema, read on a plain connection of its own."""
    connection = await reference_connect(server, db)
    try:
        return await owner_id_read(connection)
    finally:
        await connection.close()


async def reference_connect(server: Server, db: Database) -> Connection:
    """A plain asyncpg connection to `db`'s schema."""
    schema = db.location.schema
    assert schema is not None
    # As the port's connections alone on a schema: its change triggers skip their notices (docs/postgres.md).
    settings = {"search_path": schema, "daycare.notify": "off"}
    return await asyncpg.connect(**server.connect, server_settings=settings)


class PostgresReference:
    """The port's statements through one plain asyncpg connection, with the port's transactions."""

    def __init__(self, connection: Connection, owner_id: str, agents: list[Any]) -> None:
        self.connection = connection
        self.owner_id = owner_id
        self.agents = agents
        self.dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        self.ids = [cuid_create() for _ in agents]
        self.inbox_ids = [cuid_create() for _ in range(INBOX_ITEMS)]
        self.sessions: list[str] = []
        self.active: dict[str, str] = {}  # agent id -> active session: what the port's agent cache knows
        self.users_seen = False  # the port's users cache answers is_empty after its first user

    async def create(self, start: int, stop: int) -> int:
        connection, dumps = self.connection, self.dumps
        for agent_id, agent in zip(self.ids[start:stop], self.agents[start:stop], strict=True):
            session_id = cuid_create()
            async with connection.transaction():
                await agent_with_session_insert(
                    connection, dataclasses.replace(agent, id=agent_id, user_id=self.owner_id), session_id, dumps
                )
            self.active[agent_id] = session_id
            self.sessions.append(session_id)
        return stop - start

    async def append(self, start: int, stop: int) -> int:
        connection, dumps = self.connection, self.dumps
        for number in range(start, stop):
            session_id = self.active[self.ids[number % AGENTS]]
            rows = await connection.fetch(HISTORY_INSERT, session_id, "note", number, dumps({"text": f"note {number}"}))
            assert rows[0]["id"]
        return stop - start

    async def inbox(self, start: int, stop: int) -> int:
        connection = self.connection
        for number in range(start, stop):
            data = json.dumps({"type": "message", "message": {"text": f"hi {number}"}}, separators=(",", ":"))
            await connection.execute(
                INBOX_UPSERT, self.inbox_ids[number], self.ids[number % AGENTS], number, "message", data
            )
        return stop - start

    async def find(self, start: int, stop: int) -> int:
        loads = json.loads
        for number in range(start, stop):
            rows = await self.connection.fetch(AGENT_BY_ID, self.ids[number % AGENTS], 1)
            row = rows[0]
            agent = {
                "id": row["id"],
                "userId": row["user_id"],
                "type": row["type"],
                "descriptor": loads(row["descriptor"]),
                "activeSessionId": row["active_session_id"],
                "permissions": loads(row["permissions"]),
                "tokens": loads(row["tokens"]) if row["tokens"] else None,
                "stats": loads(row["stats"]),
                "lifecycle": row["lifecycle"],
                "createdAt": row["created_at"],
                "updatedAt": row["updated_at"],
            }
            assert agent["id"]
        return stop - start

    async def history(self, start: int, stop: int) -> int:
        records = 0
        for session_id in self.sessions[start:stop]:
            rows = await self.connection.fetch(HISTORY_BY_SESSION, session_id)
            records += len([{"type": row["type"], "at": row["at"], **json.loads(row["data"])} for row in rows])
        return records

    async def resolve(self, start: int, stop: int) -> int:
        connection = self.connection
        for number in range(start, stop):
            key = f"telegram:{number}"
            assert not await connection.fetch(USER_ID_BY_KEY, key, 1)
            if not self.users_seen:
                assert await connection.fetch(ANY_USER, 1)
                self.users_seen = True
            user_id = cuid_create()
            now = int(time.time() * 1000)
            async with connection.transaction():
                await connection.execute(USER_INSERT, user_id, False, None, None, nametag_generate(), now, now)
                rows = await connection.fetch(KEY_INSERT, user_id, key)
                assert rows[0]["id"]
        return stop - start


# Tracing: which statements each side sends through asyncpg.

_TRACED = ("execute", "fetch", "fetchrow", "fetchval", "executemany")


@contextlib.contextmanager
def statements_traced(sent: list[tuple[str, str]]) -> Iterator[None]:
    """Appends (method, SQL) for every statement any asyncpg connection sends while inside."""
    originals = {name: getattr(Connection, name) for name in _TRACED}

    def traced(name: str, original: Any) -> Any:
        async def call(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            sent.append((name, query))
            return await original(self, query, *args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(Connection, name, traced(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(Connection, name, original)


@dataclass
class Trips:
    """Statements per unit of one operation, as traced: the port's, its pool resets, the reference's."""

    port: float
    resets: float
    reference: float

    def text(self) -> str:
        resets = f" + {self.resets:g} reset" if self.resets else ""
        return f"{self.port:g}{resets} / {self.reference:g}"


async def statements_compare(server: Server, keys: list[str]) -> dict[str, Trips]:
    """Runs PROBE_UNITS of each operation on both sides (scratch schemas), traced; raises SystemExit
    when the port and the reference did not send the same statements."""
    port_db = await schema_migrated(server, "bench_probe")
    reference_db = await schema_migrated(server, "bench_probe_ref")
    await database_close(reference_db)
    connection = await reference_connect(server, reference_db)
    try:
        storage = Storage.from_database(port_db)
        owner_id = await owner_id_read(connection)
        agents = [agent_build(number, owner_id, 1_772_000_000_000) for number in range(AGENTS)]
        port = PortRun(storage, agents)
        reference = PostgresReference(connection, owner_id, agents)
        reset = connection.get_reset_query()
        trips: dict[str, Trips] = {}
        mismatches = []
        for key in keys:
            port_sent: list[tuple[str, str]] = []
            reference_sent: list[tuple[str, str]] = []
            with statements_traced(port_sent):
                await getattr(port, key)(0, PROBE_UNITS)
            with statements_traced(reference_sent):
                await getattr(reference, key)(0, PROBE_UNITS)
            port_statements = [sent for sent in port_sent if sent[1] != reset]
            resets = len(port_sent) - len(port_statements)
            if port_statements != reference_sent and not (key in CACHED and not port_statements):
                mismatches.append((key, port_statements, reference_sent))
            trips[key] = Trips(
                len(port_statements) / PROBE_UNITS, resets / PROBE_UNITS, len(reference_sent) / PROBE_UNITS
            )
    finally:
        await connection.close()
        await database_close(port_db)
    if mismatches:
        lines = ["The port and the reference sent different statements; fix the reference first."]
        for key, port_statements, reference_statements in mismatches:
            lines.append(f"-- {key}: port")
            lines.extend(f"   {method}: {sql}" for method, sql in port_statements)
            lines.append(f"-- {key}: reference")
            lines.extend(f"   {method}: {sql}" for method, sql in reference_statements)
        raise SystemExit("\n".join(lines))
    return trips


async def workload_run(server: Server, results: dict[str, Result]) -> None:
    """One run on fresh schemas: each operation in chunks alternating port and reference."""
    db = await schema_migrated(server, "bench")
    reference_db = await schema_migrated(server, "bench_ref")
    await database_close(reference_db)  # same schema and bootstrap owner, then plain asyncpg only
    connection = await reference_connect(server, reference_db)
    try:
        storage = Storage.from_database(db)
        agents = [agent_build(number, await owner_of(server, db), 1_772_000_000_000) for number in range(AGENTS)]
        port = PortRun(storage, agents)
        reference = PostgresReference(connection, await owner_id_read(connection), agents)
        await operations_interleave(port, reference, results)
    finally:
        await connection.close()
        await database_close(db)


async def server_describe(server: Server) -> dict[str, Any]:
    """The server's version and durability settings, and the machine and disk holding its data."""
    admin = await server.admin()
    try:
        settings = {
            name: await admin.fetchval(f"SHOW {name}")
            for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "data_directory")
        }
    finally:
        await admin.close()
    machine = machine_describe(Path(settings["data_directory"]))
    machine["postgres"] = settings["server_version"].split()[0]
    machine["durability"] = (
        f"synchronous_commit={settings['synchronous_commit']}, fsync={settings['fsync']}, "
        f"wal_sync_method={settings['wal_sync_method']}"
    )
    machine["asyncpg"] = asyncpg.__version__
    machine["server"] = urlsplit(server.url).hostname or os.environ.get("PGHOST", "?")
    return machine


async def postgres_runs(
    url: str, template: dict[str, Result], repeat: int
) -> tuple[list[dict[str, Result]], dict[str, Trips], dict[str, Any]]:
    """`repeat` runs of W1 on the server of `url`, after the traced statement check."""
    server = server_parse(url)
    runs: list[dict[str, Result]] = []
    try:
        machine = await server_describe(server)
        trips = await statements_compare(server, list(template))
        await schemas_drop(server)
        for _ in range(repeat):
            run = {key: dataclasses.replace(result) for key, result in template.items()}
            try:
                await workload_run(server, run)
            finally:
                await schemas_drop(server)
            runs.append(run)
    finally:
        await schemas_drop(server)
    return runs, trips, machine
