"""Baseline: the legacy final schema, as the 33-step TypeScript chain left it.

On a new file it creates that schema verbatim (the `sqlite_master` text equals
`tests/fixtures/legacy/schema.sql`), records the 33 legacy step names and creates the bootstrap
owner. On a complete legacy file it changes nothing but the `aerich` table. The decision is
in `daycare.storage.migrations.baseline_v1` (frozen with this file), so that `aerich upgrade`
and `daycare upgrade` agree.
"""

from tortoise import BaseDBAsyncClient

from daycare.storage.migrations.baseline_v1 import baseline_upgrade
from daycare.storage.migrations.dialect_guard import dialect_require

RUN_IN_TRANSACTION = True

# Objects are written in the legacy text, byte for byte; __OWNER_ID__ becomes the new owner's id.
SCHEMA_SQL = """
CREATE TABLE _migrations (
      name TEXT PRIMARY KEY,
      applied_at INTEGER NOT NULL
    );

CREATE TABLE users (
        id TEXT PRIMARY KEY,
        is_owner INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      , parent_user_id TEXT REFERENCES users(id), name TEXT, nametag TEXT);

CREATE UNIQUE INDEX idx_users_nametag ON users(nametag) WHERE nametag IS NOT NULL;

CREATE UNIQUE INDEX idx_users_nametag_required ON users(nametag);

CREATE INDEX idx_users_parent ON users(parent_user_id) WHERE parent_user_id IS NOT NULL;

CREATE UNIQUE INDEX idx_users_single_owner
        ON users(is_owner)
        WHERE is_owner = 1;

CREATE TRIGGER trg_users_nametag_required_insert
            BEFORE INSERT ON users
            FOR EACH ROW
            WHEN NEW.nametag IS NULL OR trim(NEW.nametag) = ''
            BEGIN
                SELECT RAISE(ABORT, 'users.nametag is required');
            END;

CREATE TRIGGER trg_users_nametag_required_update
            BEFORE UPDATE OF nametag ON users
            FOR EACH ROW
            WHEN NEW.nametag IS NULL OR trim(NEW.nametag) = ''
            BEGIN
                SELECT RAISE(ABORT, 'users.nametag is required');
            END;

CREATE TABLE user_connector_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        connector_key TEXT NOT NULL UNIQUE
      );

CREATE INDEX idx_user_connector_keys_user_id
        ON user_connector_keys(user_id);

CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        descriptor TEXT NOT NULL,
        active_session_id TEXT,
        permissions TEXT NOT NULL,
        tokens TEXT,
        stats TEXT NOT NULL DEFAULT '{}',
        lifecycle TEXT NOT NULL DEFAULT 'active',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      , user_id TEXT NOT NULL DEFAULT '__OWNER_ID__');

CREATE INDEX idx_agents_user_id ON agents(user_id);

CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        inference_session_id TEXT,
        created_at INTEGER NOT NULL,
        reset_message TEXT, invalidated_at INTEGER, processed_until INTEGER, ended_at INTEGER,
        FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE
      );

CREATE INDEX idx_sessions_agent_id ON sessions(agent_id);

CREATE INDEX idx_sessions_invalidated_at ON sessions(invalidated_at);

CREATE TABLE session_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        type TEXT NOT NULL,
        at INTEGER NOT NULL,
        data TEXT NOT NULL,
        FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE CASCADE
      );

CREATE INDEX idx_session_history_session ON session_history(session_id);

CREATE TABLE inbox (
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        posted_at INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL
      );

CREATE INDEX idx_inbox_agent_order
        ON inbox(agent_id, posted_at);

CREATE TABLE connections (
                user_a_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                user_b_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                requested_a INTEGER NOT NULL DEFAULT 0,
                requested_b INTEGER NOT NULL DEFAULT 0,
                requested_a_at INTEGER,
                requested_b_at INTEGER,
                PRIMARY KEY (user_a_id, user_b_id),
                CHECK (user_a_id < user_b_id)
            );

CREATE INDEX idx_connections_user_b ON connections(user_b_id);

CREATE TABLE "tasks" (
                    id TEXT NOT NULL,
                    user_id TEXT NOT NULL,
                    title TEXT NOT NULL,
                    description TEXT,
                    code TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    deleted_at INTEGER,
                    PRIMARY KEY (user_id, id)
                );

CREATE INDEX idx_tasks_updated_at ON tasks(updated_at);

CREATE INDEX idx_tasks_user_id ON tasks(user_id);

CREATE TABLE "tasks_cron" (
            id TEXT PRIMARY KEY,
            task_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            schedule TEXT NOT NULL,
            agent_id TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            delete_after_run INTEGER NOT NULL DEFAULT 0,
            last_run_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            FOREIGN KEY (user_id, task_id) REFERENCES "tasks"(user_id, id)
        );

CREATE INDEX idx_tasks_cron_enabled ON tasks_cron(enabled);

CREATE INDEX idx_tasks_cron_task_id ON tasks_cron(user_id, task_id);

CREATE INDEX idx_tasks_cron_updated_at ON tasks_cron(updated_at);

CREATE TABLE "tasks_heartbeat" (
            id TEXT PRIMARY KEY,
            task_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            title TEXT NOT NULL,
            last_run_at INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            FOREIGN KEY (user_id, task_id) REFERENCES "tasks"(user_id, id)
        );

CREATE INDEX idx_tasks_heartbeat_task_id ON tasks_heartbeat(user_id, task_id);

CREATE INDEX idx_tasks_heartbeat_updated_at ON tasks_heartbeat(updated_at);

CREATE INDEX idx_tasks_heartbeat_user_id ON tasks_heartbeat(user_id);

CREATE TABLE signals_events (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        type TEXT NOT NULL,
        source TEXT NOT NULL,
        data TEXT,
        created_at INTEGER NOT NULL
      );

CREATE INDEX idx_signals_events_created
        ON signals_events(created_at);

CREATE INDEX idx_signals_events_type
        ON signals_events(type);

CREATE INDEX idx_signals_events_user
        ON signals_events(user_id);

CREATE TABLE signals_subscriptions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        pattern TEXT NOT NULL,
        silent INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE(user_id, agent_id, pattern)
      );

CREATE INDEX idx_signals_subscriptions_user_agent
        ON signals_subscriptions(user_id, agent_id);

CREATE TABLE signals_delayed (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        type TEXT NOT NULL,
        deliver_at INTEGER NOT NULL,
        source TEXT NOT NULL,
        data TEXT,
        repeat_key TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );

CREATE INDEX idx_signals_delayed_deliver
        ON signals_delayed(deliver_at);

CREATE TABLE channels (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL UNIQUE,
        leader TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );

CREATE INDEX idx_channels_name
        ON channels(name);

CREATE INDEX idx_channels_user
        ON channels(user_id);

CREATE TABLE channel_members (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        username TEXT NOT NULL,
        joined_at INTEGER NOT NULL,
        UNIQUE(channel_id, agent_id)
      );

CREATE INDEX idx_channel_members_channel
        ON channel_members(channel_id);

CREATE TABLE channel_messages (
        id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        sender_username TEXT NOT NULL,
        text TEXT NOT NULL,
        mentions TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );

CREATE INDEX idx_channel_messages_channel_created
        ON channel_messages(channel_id, created_at);

CREATE TABLE expose_endpoints (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        target TEXT NOT NULL,
        provider TEXT NOT NULL,
        domain TEXT NOT NULL,
        mode TEXT NOT NULL,
        auth TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );

CREATE INDEX idx_expose_endpoints_domain
        ON expose_endpoints(domain);

CREATE INDEX idx_expose_endpoints_user
        ON expose_endpoints(user_id);

CREATE TABLE processes (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL,
        command TEXT NOT NULL,
        cwd TEXT NOT NULL,
        home TEXT,
        env TEXT NOT NULL,
        package_managers TEXT NOT NULL,
        allowed_domains TEXT NOT NULL,
        allow_local_binding INTEGER NOT NULL DEFAULT 0,
        permissions TEXT NOT NULL,
        owner TEXT,
        keep_alive INTEGER NOT NULL DEFAULT 0,
        desired_state TEXT NOT NULL DEFAULT 'running',
        status TEXT NOT NULL DEFAULT 'running',
        pid INTEGER,
        boot_time_ms INTEGER,
        restart_count INTEGER NOT NULL DEFAULT 0,
        restart_failure_count INTEGER NOT NULL DEFAULT 0,
        next_restart_at INTEGER,
        settings_path TEXT NOT NULL,
        log_path TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_started_at INTEGER,
        last_exited_at INTEGER
      );

CREATE INDEX idx_processes_owner
        ON processes(owner);

CREATE INDEX idx_processes_user
        ON processes(user_id);

CREATE TABLE system_prompts (
                id TEXT PRIMARY KEY,
                scope TEXT NOT NULL,
                user_id TEXT,
                kind TEXT NOT NULL,
                condition TEXT,
                prompt TEXT NOT NULL,
                enabled INTEGER NOT NULL DEFAULT 1,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );

CREATE INDEX idx_system_prompts_scope ON system_prompts(scope);

CREATE INDEX idx_system_prompts_user_id ON system_prompts(user_id);

CREATE TABLE token_stats_hourly (
                hour_start INTEGER NOT NULL,
                user_id TEXT NOT NULL,
                agent_id TEXT NOT NULL,
                model TEXT NOT NULL,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                cache_read_tokens INTEGER NOT NULL DEFAULT 0,
                cache_write_tokens INTEGER NOT NULL DEFAULT 0,
                cost REAL NOT NULL DEFAULT 0,
                PRIMARY KEY (hour_start, user_id, agent_id, model),
                FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
                FOREIGN KEY (agent_id) REFERENCES agents(id) ON DELETE CASCADE
            );

CREATE INDEX idx_token_stats_hourly_agent_hour ON token_stats_hourly(agent_id, hour_start);

CREATE INDEX idx_token_stats_hourly_hour_start ON token_stats_hourly(hour_start);

CREATE INDEX idx_token_stats_hourly_user_hour ON token_stats_hourly(user_id, hour_start);
"""


async def upgrade(db: BaseDBAsyncClient) -> str:
    dialect_require(db, "sqlite")
    return await baseline_upgrade(db, SCHEMA_SQL)


async def downgrade(db: BaseDBAsyncClient) -> str:
    raise RuntimeError("The baseline cannot be downgraded: it holds every table of the legacy schema.")


MODELS_STATE = (
    "eJztXWtv3DYW/SvEfNkUmBSJkzTZer84jtN469hB7CwKFIXCkegZrTWiSnFsD7L+70tS7x"
    "GlETkvjX2BFq2le0nNIUWec3lJ/RhMqUeC+OczMsbu/LM/Zpj7NBz8in4MQjwl4n+aTIZo"
    "gKOoMJAXOB4FyseZZnbqOh7FnGGXi1vXOIiJuOSR2GV+lNY2OEIxJxGi14hPCApUXehqHp"
    "FLZYXy8hCbhSFhQ3RDxGVGsPechsEcXVMm/yVh7Lvxz7JSj7qiVj8cb6j8Wej/PSMOp2Mi"
    "ymSilj//Epf90CP3JM7+jG6ca58EXgVS9V9xU91xuHgMefV4gtlHZSuffuS4NJhNw7J9NO"
    "cTGuYO4ufJq2MiHhhz4pXgDWdBkDZGdil5XnGBsxnJH9QrLnjkGs8C2UjSO3mG4trAcc4v"
    "rpzLkyvHGdQaMPMoYZ5eckUfEI3vhzxWGEzxvROQcMwn4s+DN28ekooKKBIzWeN/jr4efz"
    "r6+kxY/SSrpKIPJf3rPL11kNx7UIVgjpNiFPgF2qKbBj7xHMzrmL/3x6ch16Ne9VvAXvwe"
    "G+yzCwX4xQuxDfTH8iGe//Pg4NWrtwcvXv3y7s3rt2/fvHvxTtiqJ67fetvSQu9Pfzs9v6"
    "q2jbzw8CD7/vVNqT3khRF2b+4w85zaHXpAm2zrt6YH08UrOMRjBaf83fKB01HrW6zezNpo"
    "pq63DmEzYdF58IqELQ2HCKN4NnouXZEYL+RQQ+9EBzlEsnqOx8iP5VWfoXFARzhAExx6Ad"
    "GNV+soUjNE/TlI/QZ/dR2tfM9krEqsYaSyGan82FGNqxmnKA0IDhsgL7ktAD8Sftscp/Rv"
    "SGfM24aai4sz+Uumcfx3kIw9CwPP+bfP70++PnupWkAY+bw0Hg1LHdoV0zq3mBCqfjAhGE"
    "0I5QaYRZ5VA1T9oAGsG0BPQK/IfQPwKxHQdNDuC+It4F2d/HFVGWOy0fvZ56M/1LAynad3"
    "zi7Of8vMS0PQ8dnFew3Wcr41hDt1AcTNEY+w0GnckZzJMSMvdc/HgP+GmEyN4mtboA7/Ry"
    "Gj/XH4O5mrRjgVz4pDVze+LJD1/UL9Ietc2dXiERm+y3m2ps8JBMTvJgl9Ob9AR8dXpxfn"
    "g4fdSahjGobE5ZSJRhs0yKmKzXCZtJK4JObODZl3Flrfc7dfZSnfkXAW8gdz5HsCRV/8pl"
    "hIpkQuheIfgnIPncpaubzlUaAfgwLoQdbK0obcR4zEsQqSpW6F5Lp3NCiVO0n2jgxUSQI4"
    "9ceDkYprJFrasU9DsNL+3F8Nl7Crg5ev375+9+qX1zmpyq+0camMNzULtkrzmEw0NUcQzM"
    "2CuSQczKf0Vefy3gmGrU/m253F+4Z312m8af4+Pro8PvpwsqvZ+0jAzXVTdnKjdZ7G0qTr"
    "1BwiZT5Edz6fIJ/HKLOgbCijmVM/mesQDj3E6Q0JxbQqfBCO0b8vL84RF9OYZo5eY8Gbm6"
    "wTqNY9P0OUdRNRVgVXDetmNZ7ZP4rpY9tavHhXTSCvegHwFsCL0dq/JU6cDFpa0tSMv9b5"
    "MYRCth6KKqYnE/wX3OAFsIBeMQEj1AsP6OrmeAv+z43gzh123L1/POwRyoF/Tdy5NDBAuu"
    "K0Y7STqWWPEIfVYlgtfuIN0BR1ax5xHlvUbRuDTk9S5i4T0j/QxIyyW8O2qFFMCuK6PG50"
    "kayo3BIWJ/m39BrhNORziPzwFgd+9hqrAE/EqCtqEBdmIfcDhBlBEz8WUnGOfE+T+ruRGg"
    "wjSaqyjqGkDD8ndxo2RpPkW1qqpvpjjCpbcG2uEgJYOw9g+eE1YSR0bdV9kz+oHmCHe0dO"
    "xOhGuDMVHVmMlyZvQc0Rur95969PG91fgbqv1WvQsxbYzVuwwFnMGkLjDC1h2xJE/Fjzd6"
    "HsBdjbYl9mzF2JaNnnUUjV7SeI4CyVYMUMkTwlYc8Q75oiUu5qfcoRSWX9p0TjDpqFf2Yx"
    "7KD/nUnJuFMYINPYjLiUeUqmo7SwQyTFULrVLTOQ+SB0xpHsRUq4Y036yDoLNhT9JXHVXY"
    "lnsGV/r0uJQ6rniqmekDWyzeQF063aoKJXY06y25v07sweerfNSnlL1K6ZqK4hVtc34LdP"
    "VUuz6opktbQWsmeod6Wr1Q7XJ8J6Go7o/SknUx1XLW620lRfmnUjp0fImzHph5QTEixesM"
    "nKMlKZRd5NqDQVT7AstXl95dquR8nuTePu60XqQdOVKUGVk4x+WCna5WjXRlqbAyItuZ+P"
    "LSCy9ZzP/IUy4rAVN6Cy1lQWhNo20/tBNzyJpKB0c3dDXlDpbivncnO7zhu+r5lPQg8xIl"
    "o85kjmDBM0IvyOkBDxO6q2ZsdDJINmxJPESFKlmDLRi1CEfYaeYfQvNPpJR7/WW7j2tC2V"
    "CIfT6VT9MVIBwaX7zkYd44YlTJPtZyMbSlZ5zK7MrOIEBM2GoBVNbTCIVpxgJLWYttI3Xt"
    "ItDUlrO2ttwROOW1t+3FoB2cga7BGAbQo2NlYgdV9IRbBPS8u77grtMIJ2sGiHnnDmKxzf"
    "DDRsWV1v5clcWHRmyNJYBg3l2USSGfyqSKrvybBh0vZInWAtV7X9MDncSNodoiSeq/Lep5"
    "jdyIOOYnrN0+s6wrzRupr5c8J0OtHmbqRZAdzhtIaF/PrSjqLulUSQVL83TBw2OW11h7bP"
    "zfax5g4A9wpHcWjXP5efxZG6QZa8xSYRMcWbQJ7ZQzeHHTn7Qblhv3aPGqDg2mYNUPUDzb"
    "mHmvOY0fCK+eOx/rMn5dvDpQrUcVm6otNBhkpbFLsT4s0Ckig/NpOH8uWiUa2diOdRilCn"
    "Lm2KMEx8IaH8hQYaUT6Tk3kNNykUVU2d1OJiZSUZK0oyksCq0syruUbQpzvXp6VG6iyXCh"
    "dgkhZMEkICO/lYhgne6/0y3hMDGwICO9sBkJIcE9jLPtDdbTYV7SIZ9ol39BJzNlj3L3nt"
    "eM0/J5U9XvJPZLuDr7ngHkIwGYKtc4dMi+WwBzjmEi/jMMuCI8RZbONcEOmFSO/Ta4CeRB"
    "o/Ecz4SLxILeHGms1wecxxkvl0DTzmDun+uaVxQ/khL3mhcBSNSNgtDnRByXUXv7lvkCzg"
    "t530llJ1Ww5dFjVD/BLil/swR0D88tFDDilNW4UbNNiuJQBoMNBgT68BeqLBLv1xiIOT24"
    "ZPPJZvD1uP7FOGsUNuDT74iPLegRL/9LSS829nZ2hKsFBIIUURngcUe0MlieRxJei7/BHf"
    "Uwt1iom8oJNe669gc+KrCmH+5fNuMkhZmVeSnVzQrZLSiGteVeoMEqvPEgv4/vb5Phw2ss"
    "VVczpjrtmaee4BgPf9dJeeySnYtgA8frs8/nI2KsPVQOcrVp1YfVzyMPya+z9iVPZGnKZU"
    "XJ2NHaMp5u5ENCXCgodzTljY/AF3y7KW7QquZOgkft22CZd9DQhxBc1kjSU//x6oMVDj3o"
    "6qTyLd7qmDno2ABpiXXAByG1XiB9rPn7Qm3RVOkGq3PNUOuDEsMjy9BuiJOPlAAjwnXqI+"
    "BhpdUjUYdpEkXuLSdaUh0wk0XxJAWB0d5N9K+s0P5Z9TGnN1MFFEGHom2dtQKYshYiSSaU"
    "I3ZK49BXTNpRuuMRT1mKiQFEAn9QbxAeKj16MmxOUfMdilIcyIHVT9gB1Y0zNYGNl2j4eF"
    "ka1hXfArE8SrXoA7LEjt3agOovvpim4hxMKQaOV2dmvY+qWNxKhzLp+sw0Oplzq+F2EUEO"
    "wJtZt+ikyaxAgzkp30i11GY3ElCJLvZOi09drK3VzmXgaVYc6eKsKk+OyoEtDp3V550OlP"
    "gGToz/tp7t7rPe/ncXbw0vYYNdCa9OfCA7ozcOb9oGzAmYEzl4jxZzIdNZx+WjHowp+dqb"
    "I1z5pL/SZ+pL7nmzPgWaiYryK28ula0+WMCtHmyWU/YzHdrY06l3y609sMqOzvdRHdxhdW"
    "y7k0L2o6o/eXBSRv6cHL129fv3v1y+v85cyvtL2T2QAInLZHJAAS33Z01oHp4aFlHwDdAv"
    "T/Uj+0IFsVN+Ba1mS3Ort3ldBVr0fR7zckpWu8tgZ9HfePlBF/HP5O5gr9U/GcONSutNbD"
    "uXuG+kPWs7KrBXVi+C4neAsdTiCQnDipeunR5fHRh5OEFO5QMcQxVm9ws2RILDpqBmXcOf"
    "ae2qNYUACZhZYT/UNxK1T7TOT39XCylx0zhudSD2SzlzbuvpYyDWPu1XY2226+iF1+ATae"
    "92QwBJHRK+olXmxPIGhDezWu0AQ2OYYCYRPcM3sA2wLsbNYyAbzsA6DDcgYovL3t+aDwQO"
    "HZKLyT+4jG5CT0IurrD0lbsBi2KTyibB2SGnf/RPtMrdtkfskZ0klhUoMF1MUBiijjiDIU"
    "U/eG8HyRx6NTgbz2Y+zrKXVzmVWLcBlmWCXPaFVR6tpcFYhGEI29GV+3p1gwEy+5kWbJPQ"
    "Bwm+MYGL31DVOwyj4Aus3mnHzw77w9J/cAwG20ueHn7TN7ANsmu2AmpmgDsDN72AIF8Y+9"
    "i39AOufTTef8wqgrNN9Ao9mzW8M2sR4lRl3XYa8mBHkzJr0RIy5lXpJ0mT4fSos7RPRO9B"
    "u5eKqWTtWJ4zj05IW0ZyAsTzp0J3XNvqE6NqfgcwwNpbt6frMKEpfmGkCxg2Lf/Sjcj/1R"
    "8D30zdA9OhUjsVH/LrkA5DaQ35nBfQdQ20I9oWZDSWYPwtHms+e3JlCn5tCtrU68dW8EeX"
    "YSDs2MEkR0vtAINkGpIKB38jhCFUg1agONKzSBbRM4atHXGYnfLJ+t1gytZxI3lAAHFC8/"
    "oDgibOqnKtdk/Km6Qb+36Pd53KAr6LkDEBtztG8IiRwsj200HFyqjjCmLB9TxMP5TEyMMR"
    "eImHTwmuOOxxU2C8N0LtmTXi6RmxmN5IUHgG1K4HURxbbFnajr3v/+D9+7WVUTwy13uD8V"
    "wkfTydugX/SENrBtA0bEkMG4wHam+3hIYwvU/Ha7uPliZdxXPPmijug19oMZI9bI1vwB4W"
    "wxQkx/TgaT6ZK8xhlGD9vRIyaci6eKnQibZQPVHEFzWlCWgI6NkS/7AOiQjLV/gw4kY+24"
    "AQIcc0dNoBatoHGG+XelliD3vnVDVHyhHfYwPfFyHnMy/cLoNNLuK6zcH7Z+FE1ZylQ4Yd"
    "p5T+E4oCMcyK19EWHPZZ4VSkpA2POIJw994ROCksKzW8JaXrz2WcyzM2J0WwvXW7hhfmLs"
    "0qjT0epV4JzEb9g1R9EgDXKholJSGyQrdhsdtp+smPeGztIocwB2bnn+4pZzQ3s2A259Kc"
    "43S1XM7KF7W6WGhp6vHtIA8YoTdHGr7bMpe+qcUZF7QDe3yluUQOjW49rW9kteO17YzzlN"
    "j9f1IY4Fcayn1wA9Ue1X9IaElxzz+BOdsWA+0Cj3ms2wTb1zaa1ybWJnUtgv328o/dSuPl"
    "d+WjyeTWP1bXFZxhAlHxhXp8IrG1XxIfJDMQrIY+1iKcQzGc7onWav4frL135iQpaXxBWV"
    "ScHpy0faq+LbPztRKqeDIq+j7lQfxCwGMESr16/Kkv/fvfoyRCvXnxS25AEaAxNV9LoPil"
    "W/9QyKffggx1bmJNhq2SPuC5/t2NHRMZozFtvPjgkAbku4/TCa8WTyMMz8W/Tc96SoLWsO"
    "OuO2yNdcAXqzM3SxOyGOEM+eFfxad2gCiya4Yz4nK7TBoj80glkjCBlYh/1jQHFj+DrWkf"
    "pr6bEnSLeA9uHi2/uzE/Tl68nx6eXpxXllRk1uViN5X0+OzvoTyDgizHcnA034Ir0zbAta"
    "4MJmWaCiGevly/pGy+DwqccVP/V4S1isXaFqTjAouTwKPr2Fb2rLl8oA4dT8EaL78sWLDu"
    "gKq0Z01b3aOisnum0b8iC0xlXWzGUBZc93OfofCvx4H2PzLeBKMNq14aIMlOCI6XzMVCmq"
    "gPe7nswe/g/4oF6c"
)
