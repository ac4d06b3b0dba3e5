"""psycopg 3, both faces: a blocking ``ConnectionPool`` and an ``AsyncConnectionPool``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio.to_thread
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from app.settings import Settings
from db import queries
from db.drivers.base import ConnectionConfig, unavailable

_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


def _pool_kwargs(config: ConnectionConfig) -> dict[str, Any]:
    return {
        "conninfo": config.url,
        "min_size": min(config.pool.min, config.pool.max),
        "max_size": config.pool.max,
        "timeout": config.acquire_timeout,
        "open": False,
        "name": config.driver,
        "kwargs": {
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": config.connect_timeout,
            "options": config.libpq_options,
            "application_name": config.application_name,
        },
    }


def _pool_info(config: ConnectionConfig, pool: ConnectionPool | AsyncConnectionPool | None, kind: str) -> dict[str, Any]:
    live = {}
    if pool is not None:
        stats = pool.get_stats()
        live = {"open": stats.get("pool_size", 0), "idle": stats.get("pool_available", 0)}
    return config.pool_info(kind, **live)


class Psycopg3Database:
    """Blocking psycopg 3 calls over ``psycopg_pool.ConnectionPool``."""

    kind = "sync"

    def __init__(self, settings: Settings, driver: str = "psycopg3-sync") -> None:
        self.config = ConnectionConfig.from_settings(settings, driver)
        self._pool: ConnectionPool | None = None

    async def start(self) -> None:
        # open(wait=False) fills the pool in the background, so a database that is down at
        # start-up does not stop the service: requests answer 503 until it is back.
        self._pool = ConnectionPool(**_pool_kwargs(self.config))
        await anyio.to_thread.run_sync(lambda: self._pool.open(wait=False))

    async def stop(self) -> None:
        if self._pool is not None:
            await anyio.to_thread.run_sync(self._pool.close)
            self._pool = None

    def pool_info(self) -> dict[str, Any]:
        return _pool_info(self.config, self._pool, "psycopg_pool.ConnectionPool")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        assert self._pool is not None, "driver not started"
        try:
            with self._pool.connection() as connection:
                yield connection
        except PoolTimeout as exc:
            raise unavailable(self.config, exc, "pool_timeout") from exc
        except _CONNECTION_ERRORS as exc:
            raise unavailable(self.config, exc) from exc

    def pg_sleep(self, seconds: float) -> float:
        with self._connection() as connection:
            connection.execute(queries.PG_SLEEP.pyformat, {"seconds": seconds})
        return seconds

    def lookup(self, item_id: int) -> dict[str, Any] | None:
        with self._connection() as connection:
            return connection.execute(queries.LOOKUP.pyformat, {"item_id": item_id}).fetchone()

    def report(self, category: int) -> list[dict[str, Any]]:
        with self._connection() as connection:
            return connection.execute(queries.REPORT.pyformat, {"category": category}).fetchall()

    def write(self, slot: int, note: str) -> dict[str, Any]:
        with self._connection() as connection, connection.transaction():
            row = connection.execute(queries.WRITE.pyformat, {"slot": slot, "note": note}).fetchone()
        assert row is not None
        return row


class AsyncPsycopg3Database:
    """Awaitable psycopg 3 calls over ``psycopg_pool.AsyncConnectionPool``."""

    kind = "async"

    def __init__(self, settings: Settings, driver: str = "psycopg3-async") -> None:
        self.config = ConnectionConfig.from_settings(settings, driver)
        self._pool: AsyncConnectionPool | None = None

    async def start(self) -> None:
        self._pool = AsyncConnectionPool(**_pool_kwargs(self.config))
        await self._pool.open(wait=False)

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def pool_info(self) -> dict[str, Any]:
        return _pool_info(self.config, self._pool, "psycopg_pool.AsyncConnectionPool")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        assert self._pool is not None, "driver not started"
        try:
            async with self._pool.connection() as connection:
                yield connection
        except PoolTimeout as exc:
            raise unavailable(self.config, exc, "pool_timeout") from exc
        except _CONNECTION_ERRORS as exc:
            raise unavailable(self.config, exc) from exc

    async def pg_sleep(self, seconds: float) -> float:
        async with self._connection() as connection:
            await connection.execute(queries.PG_SLEEP.pyformat, {"seconds": seconds})
        return seconds

    async def lookup(self, item_id: int) -> dict[str, Any] | None:
        async with self._connection() as connection:
            return await (await connection.execute(queries.LOOKUP.pyformat, {"item_id": item_id})).fetchone()

    async def report(self, category: int) -> list[dict[str, Any]]:
        async with self._connection() as connection:
            return await (await connection.execute(queries.REPORT.pyformat, {"category": category})).fetchall()

    async def write(self, slot: int, note: str) -> dict[str, Any]:
        async with self._connection() as connection, connection.transaction():
            cursor = await connection.execute(queries.WRITE.pyformat, {"slot": slot, "note": note})
            row = await cursor.fetchone()
        assert row is not None
        return row
