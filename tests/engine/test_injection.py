"""Services are wired only by injection: none can be built without its repositories, none opens storage."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daycare.engine.channels import Channels
from daycare.engine.cron_scheduler import CronScheduler
from daycare.engine.crons import Crons
from daycare.engine.delayed_signals import DelayedSignals
from daycare.engine.durable_inbox import DurableInboxAgentSystem
from daycare.engine.exposes import Exposes
from daycare.engine.heartbeat_scheduler import HeartbeatScheduler
from daycare.engine.heartbeats import Heartbeats
from daycare.engine.processes import Processes
from daycare.engine.signals import Signals

ENGINE_DIR = Path(__file__).resolve().parents[2] / "daycare" / "engine"
SERVICES: list[Callable[..., Any]] = [
    Signals,
    DelayedSignals,
    Channels,
    Crons,
    CronScheduler,
    Heartbeats,
    HeartbeatScheduler,
    DurableInboxAgentSystem,
    Processes,
    Exposes,
]


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.__name__)
def test_a_service_without_its_repositories_is_a_type_error(service: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match="missing .* required keyword-only argument"):
        service()


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.__name__)
def test_a_service_takes_no_path_or_location_to_open(service: Callable[..., Any]) -> None:
    with pytest.raises(TypeError):
        service("daycare.db")


def test_only_the_engine_module_opens_or_closes_a_database() -> None:
    """The service modules import no way to open storage; engine.py is the one place that does."""
    forbidden = {"database_open", "database_close", "database_migrate", "Database", "Tortoise", "connections"}
    offenders: list[str] = []
    for module in sorted(ENGINE_DIR.glob("*.py")):
        if module.name in ("engine.py", "summary.py"):
            continue
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                offenders += [f"{module.name}: {alias.name}" for alias in node.names if alias.name in forbidden]
                if node.module and node.module.startswith(("tortoise", "daycare.storage.db.database")):
                    offenders.append(f"{module.name}: from {node.module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{module.name}: import {alias.name}" for alias in node.names if "sqlite" in alias.name]
    assert offenders == []
