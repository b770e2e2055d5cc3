"""The engine runs Processes and Exposes: a process outlives its engine and the next engine supervises
it; an endpoint answers through the engine's proxy with its password, and only with it, across a restart."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from pathlib import Path

import aiohttp

from daycare.engine import Engine
from daycare.engine.process_os import pid_alive
from daycare.engine.processes import ProcessCreateInput
from daycare.storage.repositories.context import Context
from tests.engine.helpers import engine_config
from tests.engine.test_exposes import basic, target_serve, via_proxy
from tests.engine.test_processes import bwrap_problem, until

USER = Context("user-1")


async def test_a_process_outlives_its_engine_and_the_next_engine_supervises_it(
    database_url: str, tmp_path: Path
) -> None:
    # The engine's own sandbox setting: bubblewrap where it can run here, else an explicit "none".
    sandbox = "bubblewrap" if bwrap_problem(weaker_nested=True) is None else "none"
    config = dataclasses.replace(engine_config(database_url, tmp_path), sandbox=sandbox)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    permissions = {"workingDir": str(workspace), "writeDirs": [str(workspace)]}
    pid: int | None = None
    try:
        async with Engine(config) as first:
            created = await first.services.processes.create(
                ProcessCreateInput(command="echo started; exec sleep 60", user_id="user-1", keep_alive=True),
                permissions,
            )
            pid = created.pid
            assert pid is not None
            await until(lambda: "started" in Path(created.log_path).read_text())
        assert pid_alive(pid)  # the engine stopped; its process did not (engine.stopProcesses is false)

        async with Engine(config) as second:
            adopted = await second.services.processes.get(created.id)
            assert (adopted.status, adopted.pid, adopted.restart_count) == ("running", pid, 0)
            assert Path(created.log_path).read_text().count("started") == 1  # adopted, not started again
            stopped = await second.services.processes.stop_process(created.id)
            assert stopped.status == "stopped"
            assert not pid_alive(pid)
    finally:
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


async def test_stop_processes_setting_stops_them_with_the_engine(database_url: str, tmp_path: Path) -> None:
    config = dataclasses.replace(engine_config(database_url, tmp_path), sandbox="none", stop_processes=True)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    async with Engine(config) as engine:
        created = await engine.services.processes.create(
            ProcessCreateInput(command="exec sleep 60", user_id="user-1"),
            {"workingDir": str(workspace), "writeDirs": [str(workspace)]},
        )
        assert created.pid is not None and pid_alive(created.pid)
    assert not pid_alive(created.pid)


async def test_an_endpoint_answers_through_the_engine_with_its_password_only(database_url: str, tmp_path: Path) -> None:
    config = engine_config(database_url, tmp_path)
    async with target_serve() as target, aiohttp.ClientSession() as http:
        async with Engine(config) as first:
            exposes = first.services.exposes
            created = await exposes.create(
                USER, target={"type": "port", "port": target.port}, mode="local-network", authenticated=True
            )
            password = created.password
            assert password is not None
            domain = created.endpoint.domain
            status, body, _ = await via_proxy(http, exposes, domain, "/a", password=password)
            assert (status, body) == (200, "GET:/a")
        # After a restart the endpoint is back (the local provider hands it a new port, so a new domain),
        # and the same password opens it: only its hash was stored.
        async with Engine(config) as second:
            exposes = second.services.exposes
            (restored,) = exposes.list(USER)
            status, body, _ = await via_proxy(http, exposes, restored.domain, "/b", password=password)
            assert (status, body) == (200, "GET:/b")
            status, _, headers = await via_proxy(http, exposes, restored.domain, "/c")
            assert (status, headers["WWW-Authenticate"]) == (401, 'Basic realm="daycare"')
            status, _, _ = await via_proxy(http, exposes, restored.domain, "/d", password="wrong")
            assert status == 401
            url = f"http://127.0.0.1:{exposes.proxy_port}/e"
            async with http.get(url, headers={"Host": restored.domain, "Authorization": basic("x", password)}) as r:
                assert r.status == 401
        assert [seen["path"] for seen in target.seen] == ["/a", "/b"]
