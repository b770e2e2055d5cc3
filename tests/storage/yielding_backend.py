"""A test backend that yields to the event loop before and after every statement.

The caches must be right whatever the driver does between a statement and the code after it
(an async driver such as asyncpg suspends there, for as long as the server takes).
`DAYCARE_TEST_BACKEND=yielding pytest` runs the suite on this backend. It yields one to three
times on each side, from a seeded generator (`DAYCARE_TEST_YIELD_SEED`, default 1), so that
statements of concurrent tasks finish in many different orders, reproducibly.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any, TypeVar

from daycare.storage.db import backend
from daycare.storage.db.backend import DaycareSqliteClient, UnboundClient

T = TypeVar("T")
_turns = random.Random(int(os.environ.get("DAYCARE_TEST_YIELD_SEED", "1")))


async def _yield() -> None:
    for _ in range(_turns.randint(1, 3)):
        await asyncio.sleep(0)


class _Yielding:
    async def _run(self, call: Callable[[Any], T]) -> T:
        await _yield()
        try:
            return await super()._run(call)  # type: ignore[misc, no-any-return]
        finally:
            await _yield()


class YieldingTransactionClient(_Yielding, backend._TransactionClient):
    async def begin(self) -> None:
        await _yield()
        await super().begin()
        await _yield()

    async def commit(self) -> None:
        await _yield()
        await super().commit()
        await _yield()


class YieldingClient(_Yielding, DaycareSqliteClient):
    transaction_class = YieldingTransactionClient


def get_client_class(db_info: dict[str, Any]) -> type[DaycareSqliteClient]:
    return (
        backend.get_client_class(db_info)
        if issubclass(backend.get_client_class(db_info), UnboundClient)
        else YieldingClient
    )
