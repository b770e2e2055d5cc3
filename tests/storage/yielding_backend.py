"""A test backend that yields to the event loop before and after every statement.

The caches must be right whatever the driver does between a statement and the code after it
(an async driver such as asyncpg suspends there). `DAYCARE_TEST_BACKEND=yielding pytest`
runs the suite on this backend, so every such interleaving gets a chance to happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from daycare.storage.db import backend
from daycare.storage.db.backend import DaycareSqliteClient, UnboundClient

T = TypeVar("T")


class _Yielding:
    async def _run(self, call: Callable[[Any], T]) -> T:
        await asyncio.sleep(0)
        try:
            return await super()._run(call)  # type: ignore[misc, no-any-return]
        finally:
            await asyncio.sleep(0)


class YieldingTransactionClient(_Yielding, backend._TransactionClient):
    async def begin(self) -> None:
        await asyncio.sleep(0)
        await super().begin()
        await asyncio.sleep(0)

    async def commit(self) -> None:
        await asyncio.sleep(0)
        await super().commit()
        await asyncio.sleep(0)


class YieldingClient(_Yielding, DaycareSqliteClient):
    transaction_class = YieldingTransactionClient


def get_client_class(db_info: dict[str, Any]) -> type[DaycareSqliteClient]:
    return (
        backend.get_client_class(db_info)
        if issubclass(backend.get_client_class(db_info), UnboundClient)
        else YieldingClient
    )
