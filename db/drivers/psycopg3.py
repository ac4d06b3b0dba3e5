"""psycopg 3, both faces: a blocking ``ConnectionPool`` and an ``AsyncConnectionPool``.

Equal work: connections are opened with ``autocommit=True`` (the pool's ``kwargs``), so a read is
its one statement, and the write runs in ``connection.transaction()`` (BEGIN ... COMMIT). With
``driver_defaults`` autocommit stays off, psycopg's default: ``pool.connection()`` then wraps
every checkout in a transaction it commits on return. Prepared statements are psycopg's
defaults in both: a statement is prepared on a connection's 6th run (``prepare_threshold=5``).

Two things make the pools recover from an outage like the other drivers do:

- ``check``: psycopg_pool hands out idle connections unchecked (its own ``check_connection``
  is a round trip). Ours looks at the socket, no round trip: a connection the server has
  closed is refused and the pool drained (every connection opened before is replaced), so a
  restart costs no request a 503 once the database is back.
- ``reconnect_timeout``: psycopg_pool retries a failed connection in the background with a
  growing backoff (1 s, 2 s, 4 s, ... for 5 minutes by default), and while it does, requests
  cannot start a new attempt: after an outage of a few seconds the pool stayed empty for
  seconds more after the database was back. Giving up after ``_RECONNECT_TIMEOUT`` hands the
  next attempt to the next request, which starts it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio.to_thread
import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from db import queries
from db.drivers.base import ConnectionConfig, lost_prepared_statement, peer_hung_up, unavailable

_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
#: How long a request still waits on the pool once its last connection attempt failed: long
#: enough to ask the pool to grow (its retry is how it recovers), short enough to answer 503 at once.
_DOWN_WAIT = 0.1
#: How long the pool retries one failed connection in the background (attempts 1 s apart)
#: before leaving the next attempt to the next request.
_RECONNECT_TIMEOUT = 2.0
_MIN_POLICY = "kept open: the pool replaces a lost connection in the background"


def _closed_by_server(connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    return connection.closed or peer_hung_up(connection.fileno())


class _ServerClosed(psycopg.OperationalError):
    """Raised by a pool's ``check``: the pool discards the connection and hands out another."""

    def __init__(self) -> None:
        super().__init__("the server closed this pooled connection")


class _LastConnect:
    """The outcome of the pool's latest connection attempt.

    psycopg_pool connects in background workers and keeps their errors to itself: with the
    database down, a request would wait the whole acquire_timeout and then read "pool_timeout".
    Recording each attempt (through the public ``connection_class`` hook) lets a request say
    "database_unavailable", with libpq's message, as soon as the other drivers do.
    """

    def __init__(self) -> None:
        self.error: Exception | None = None
        self._as_of = 0.0  # when the attempt whose outcome ``error`` holds started
        self._lock = threading.Lock()

    def _record(self, started: float, error: Exception | None) -> None:
        # The latest attempt to *start* wins: one that hung (a blackholed connect) and fails after
        # a later one succeeded must not mark a database that is back as down.
        with self._lock:
            if started >= self._as_of:
                self._as_of, self.error = started, error

    def connection_class(self, base: type[Any]) -> type[Any]:
        last = self
        if issubclass(base, psycopg.AsyncConnection):

            class AsyncTracked(base):  # type: ignore[misc]  # subclasses the connection class the pool was given, a type[Any]
                @classmethod
                async def connect(cls, *args: Any, **kwargs: Any) -> Any:
                    started = time.monotonic()
                    try:
                        connection = await super().connect(*args, **kwargs)
                    except Exception as exc:
                        last._record(started, exc)
                        raise
                    last._record(started, None)
                    return connection

            return AsyncTracked

        class Tracked(base):  # type: ignore[misc]  # subclasses the connection class the pool was given, a type[Any]
            @classmethod
            def connect(cls, *args: Any, **kwargs: Any) -> Any:
                started = time.monotonic()
                try:
                    connection = super().connect(*args, **kwargs)
                except Exception as exc:
                    last._record(started, exc)
                    raise
                last._record(started, None)
                return connection

        return Tracked

    def wait(self, config: ConnectionConfig, pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> float:
        """How long to wait for a connection: briefly while the database is failing and none is idle."""
        if self.error is not None and not pool.get_stats().get("pool_available", 0):
            return min(_DOWN_WAIT, config.acquire_timeout)
        return config.acquire_timeout

    def timeout_error(self, config: ConnectionConfig, exc: PoolTimeout) -> Exception:
        """The 503 for a pool timeout: the connect error if the database is failing, else pool_timeout."""
        if self.error is not None:
            return unavailable(config, self.error)
        return unavailable(config, exc, "pool_timeout")


def _pool_kwargs(config: ConnectionConfig, last_connect: _LastConnect, base: type[Any], check: Any) -> dict[str, Any]:
    return {
        "conninfo": config.url,
        "connection_class": last_connect.connection_class(base),
        "check": check,
        "min_size": config.min_size,
        "max_size": config.pool.max,
        "timeout": config.acquire_timeout,
        "reconnect_timeout": _RECONNECT_TIMEOUT,
        "open": False,
        "name": config.driver,
        "kwargs": {
            "autocommit": not config.driver_defaults,
            "row_factory": dict_row,
            "connect_timeout": config.connect_timeout,
            "options": config.libpq_options,
            "application_name": config.application_name,
            **({} if config.prepared_statements else {"prepare_threshold": None}),
        },
    }


def _pool_info(config: ConnectionConfig, pool: ConnectionPool[Any] | AsyncConnectionPool[Any] | None, kind: str) -> dict[str, Any]:
    live = {}
    if pool is not None:
        stats = pool.get_stats()
        live = {"open": stats.get("pool_size", 0), "idle": stats.get("pool_available", 0)}
    return config.pool_info(kind, _MIN_POLICY, **live)


class Psycopg3Database:
    """Blocking psycopg 3 calls over ``psycopg_pool.ConnectionPool``."""

    kind = "sync"
    #: What ``prepared_statements=False`` sets: psycopg prepares no statement on the server (by
    #: default it does from a query's 6th run on a connection); the docs' advice for PgBouncer before
    #: 1.22 (https://www.psycopg.org/psycopg3/docs/advanced/prepare.html#using-prepared-statements-with-pgbouncer).
    pgbouncer_setting = "prepare_threshold=None"

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._pool: ConnectionPool[psycopg.Connection[DictRow]] | None = None
        self._last_connect = _LastConnect()

    async def start(self) -> None:
        # open(wait=False) fills the pool in the background, so a database that is down at
        # start-up does not stop the service: requests answer 503 until it is back.
        self._pool = pool = ConnectionPool(**_pool_kwargs(self.config, self._last_connect, psycopg.Connection, self._check))
        await anyio.to_thread.run_sync(lambda: pool.open(wait=False))

    def _check(self, connection: psycopg.Connection[Any]) -> None:
        if _closed_by_server(connection):
            # The server went away (or restarted): its other idle connections are gone too.
            assert self._pool is not None
            self._pool.drain()
            raise _ServerClosed

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
            with self._pool.connection(self._last_connect.wait(self.config, self._pool)) as connection:
                yield connection
        except PoolTimeout as exc:
            raise self._last_connect.timeout_error(self.config, exc) from exc
        except _CONNECTION_ERRORS as exc:
            raise unavailable(self.config, exc, pgbouncer_setting=self.pgbouncer_setting) from exc
        except psycopg.Error as exc:
            if not lost_prepared_statement(self.config, exc):
                raise
            raise unavailable(self.config, exc, pgbouncer_setting=self.pgbouncer_setting) from exc

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
    #: What ``prepared_statements=False`` sets: psycopg prepares no statement on the server (by
    #: default it does from a query's 6th run on a connection); the docs' advice for PgBouncer before
    #: 1.22 (https://www.psycopg.org/psycopg3/docs/advanced/prepare.html#using-prepared-statements-with-pgbouncer).
    pgbouncer_setting = "prepare_threshold=None"

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] | None = None
        self._last_connect = _LastConnect()

    async def start(self) -> None:
        self._pool = AsyncConnectionPool(
            **_pool_kwargs(self.config, self._last_connect, psycopg.AsyncConnection, self._check)
        )
        await self._pool.open(wait=False)

    async def _check(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if _closed_by_server(connection):
            assert self._pool is not None
            await self._pool.drain()
            raise _ServerClosed

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
            async with self._pool.connection(self._last_connect.wait(self.config, self._pool)) as connection:
                yield connection
        except PoolTimeout as exc:
            raise self._last_connect.timeout_error(self.config, exc) from exc
        except _CONNECTION_ERRORS as exc:
            raise unavailable(self.config, exc, pgbouncer_setting=self.pgbouncer_setting) from exc
        except psycopg.Error as exc:
            if not lost_prepared_statement(self.config, exc):
                raise
            raise unavailable(self.config, exc, pgbouncer_setting=self.pgbouncer_setting) from exc

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
