"""SQLAlchemy 2 Core, both faces: a sync engine on psycopg2 and an async engine on asyncpg.

Written the way SQLAlchemy documents it (``engine.connect()`` for reads, ``engine.begin()``
for the write), so the figures include what the library adds over its raw driver.
The pools are QueuePools of ``pool_size = max`` (never above max); QueuePool has no minimum,
so ``start`` opens ``min`` connections, which it then keeps.

Equal work: both engines are created with ``isolation_level="AUTOCOMMIT"``, so a read is its
one statement (the pool's rollback at check-in sends nothing in autocommit). The write goes
through ``engine.execution_options(isolation_level="READ COMMITTED")``, SQLAlchemy's documented
way to use another level on the same pool, so it is one explicit transaction. On psycopg2 the
switch back costs one statement: a connection that wrote before sends ``SET
default_transaction_isolation TO DEFAULT`` when it next leaves autocommit (psycopg2's
``set_isolation_level``); on asyncpg it is client-side. With ``driver_defaults`` both engines
keep SQLAlchemy's defaults: every connection runs in a transaction that is rolled back on close.

SQLAlchemy invalidates its whole pool when a query meets a dropped connection, which still
costs that request a 503. A ``checkout`` hook spots connections the server has already closed
as they are handed out, without a round trip (``pool_pre_ping`` would add a ``SELECT 1`` to
every request), and has the pool replace them before any request sees one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio.to_thread
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from db import queries
from db.drivers.base import QUERY_CANCELED, ConnectionConfig, lost_prepared_statement, open_connections, refused_by_server, sqlstate, unavailable
from db.drivers.psycopg2 import drop_closed_on_checkout, queuepool_info
from db.url import with_driver

_PG_SLEEP = text(queries.PG_SLEEP.sqlalchemy)
_LOOKUP = text(queries.LOOKUP.sqlalchemy)
_REPORT = text(queries.REPORT.sqlalchemy)
_WRITE = text(queries.WRITE.sqlalchemy)
# Lost or refused connections; statement_timeout arrives as OperationalError (psycopg2) or as
# a DBAPIError carrying SQLSTATE 57014 (asyncpg), which unavailable() recognises.
_CONNECTION_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError)
# asyncpg's "connection was closed in the middle of operation" (08003) and "too many clients"
# (53300) reach us as plain DBAPIErrors, neither Operational nor Interface: refused_by_server()
# tells them by their SQLSTATE.


def _drop_closed_asyncpg_on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
    """The async engine's ``checkout`` hook: asyncpg notices a closed socket as soon as the event
    loop does, so a closed connection is just ``is_closed()``; see ``drop_closed_on_checkout``."""
    connection = record.driver_connection
    assert connection is not None, "a connection being checked out is open"
    if connection.is_closed():
        raise sqlalchemy.exc.InvalidatePoolError("the server closed this pooled connection")


def _is_unavailable(exc: BaseException) -> bool:
    """A lost connection (whatever class SQLAlchemy gives it) or a statement timeout."""
    if isinstance(exc, _CONNECTION_ERRORS) or getattr(exc, "connection_invalidated", False):
        return True
    return sqlstate(exc) == QUERY_CANCELED or refused_by_server(exc)


#: What a connection attempt raises through engine.connect() while the database is down or slow.
_START_ERRORS = (sqlalchemy.exc.DBAPIError, OSError, TimeoutError)
#: The write's level when reads run in autocommit (Postgres's default level).
_WRITE_ISOLATION = "READ COMMITTED"


def _engine_kwargs(config: ConnectionConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"pool_size": config.pool.max, "max_overflow": 0, "pool_timeout": config.acquire_timeout}
    if not config.driver_defaults:
        kwargs["isolation_level"] = "AUTOCOMMIT"
    return kwargs


def _pool_info(config: ConnectionConfig, engine: Engine | AsyncEngine | None, kind: str) -> dict[str, Any]:
    # Both engines get a QueuePool (an AsyncAdaptedQueuePool for the async one): pool_size is set.
    return queuepool_info(config, engine.pool if engine is not None else None, kind)


class SqlalchemyDatabase:
    """Blocking SQLAlchemy Core calls on a psycopg2 engine."""

    kind = "sync"
    #: None: psycopg2 underneath never prepares on the server (see Psycopg2Database).
    pgbouncer_setting = None

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._engine: Engine | None = None
        self._writes: Engine | None = None

    async def start(self) -> None:
        self._engine = engine = create_engine(
            with_driver(self.config.url, "postgresql+psycopg2"),
            connect_args={
                "connect_timeout": self.config.connect_timeout,
                "options": self.config.libpq_options,
                "application_name": self.config.application_name,
            },
            **_engine_kwargs(self.config),
        )
        event.listen(engine, "checkout", drop_closed_on_checkout)
        self._writes = engine if self.config.driver_defaults else engine.execution_options(isolation_level=_WRITE_ISOLATION)
        await anyio.to_thread.run_sync(open_connections, engine.connect, self.config.min_size, _START_ERRORS)

    async def stop(self) -> None:
        if self._engine is not None:
            await anyio.to_thread.run_sync(self._engine.dispose)
            self._engine = self._writes = None

    def pool_info(self) -> dict[str, Any]:
        return _pool_info(self.config, self._engine, "sqlalchemy QueuePool")

    def _started(self) -> Engine:
        assert self._engine is not None, "driver not started"
        return self._engine

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlalchemy.exc.TimeoutError as exc:
            raise unavailable(self.config, exc, "pool_timeout") from exc
        except (sqlalchemy.exc.DBAPIError, OSError) as exc:
            if not _is_unavailable(exc):
                raise
            raise unavailable(self.config, exc) from exc

    def pg_sleep(self, seconds: float) -> float:
        with self._errors(), self._started().connect() as connection:
            connection.execute(_PG_SLEEP, {"seconds": seconds})
        return seconds

    def lookup(self, item_id: int) -> dict[str, Any] | None:
        with self._errors(), self._started().connect() as connection:
            row = connection.execute(_LOOKUP, {"item_id": item_id}).mappings().first()
        return dict(row) if row else None

    def report(self, category: int) -> list[dict[str, Any]]:
        with self._errors(), self._started().connect() as connection:
            return [dict(row) for row in connection.execute(_REPORT, {"category": category}).mappings()]

    def write(self, slot: int, note: str) -> dict[str, Any]:
        assert self._writes is not None, "driver not started"
        with self._errors(), self._writes.begin() as connection:
            return dict(connection.execute(_WRITE, {"slot": slot, "note": note}).mappings().one())


class AsyncSqlalchemyDatabase:
    """Awaitable SQLAlchemy Core calls on an asyncpg engine."""

    kind = "async"
    #: What ``prepared_statements=False`` sets: asyncpg's own statement cache off, so the dialect's
    #: ``prepare()`` gets the unnamed statement (asyncpg >= 0.31). The dialect's docs describe
    #: another route for PgBouncer, unique statement names (``prepared_statement_name_func``) with
    #: NullPool (https://docs.sqlalchemy.org/en/20/dialects/postgresql.html#prepared-statement-name-with-pgbouncer);
    #: this one keeps the pool and was checked on the wire (shared/notes/driver-configs.md, section 2).
    pgbouncer_setting = 'connect_args={"statement_cache_size": 0}'

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._engine: AsyncEngine | None = None
        self._writes: AsyncEngine | None = None

    async def start(self) -> None:
        self._engine = engine = create_async_engine(
            with_driver(self.config.url, "postgresql+asyncpg"),
            connect_args={
                "timeout": self.config.connect_timeout,
                **({} if self.config.prepared_statements else {"statement_cache_size": 0}),
                "server_settings": {
                    "statement_timeout": str(self.config.statement_timeout_ms),
                    "application_name": self.config.application_name,
                },
            },
            **_engine_kwargs(self.config),
        )
        event.listen(engine.sync_engine, "checkout", _drop_closed_asyncpg_on_checkout)
        self._writes = engine if self.config.driver_defaults else engine.execution_options(isolation_level=_WRITE_ISOLATION)
        await self._open_min(engine)

    async def _open_min(self, engine: AsyncEngine) -> None:
        """As ``open_connections``, for the async pool (a database that is down is no error here)."""
        opened = []
        try:
            for _ in range(self.config.min_size):
                opened.append(await engine.connect())
        except _START_ERRORS:
            pass
        finally:
            for connection in opened:
                await connection.close()

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = self._writes = None

    def pool_info(self) -> dict[str, Any]:
        return _pool_info(self.config, self._engine, "sqlalchemy AsyncAdaptedQueuePool")

    def _started(self) -> AsyncEngine:
        assert self._engine is not None, "driver not started"
        return self._engine

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except sqlalchemy.exc.TimeoutError as exc:
            raise unavailable(self.config, exc, "pool_timeout") from exc
        except (sqlalchemy.exc.DBAPIError, OSError) as exc:
            if not (_is_unavailable(exc) or lost_prepared_statement(self.config, exc)):
                raise
            raise unavailable(self.config, exc, pgbouncer_setting=self.pgbouncer_setting) from exc

    async def pg_sleep(self, seconds: float) -> float:
        async with self._errors(), self._started().connect() as connection:
            await connection.execute(_PG_SLEEP, {"seconds": seconds})
        return seconds

    async def lookup(self, item_id: int) -> dict[str, Any] | None:
        async with self._errors(), self._started().connect() as connection:
            row = (await connection.execute(_LOOKUP, {"item_id": item_id})).mappings().first()
        return dict(row) if row else None

    async def report(self, category: int) -> list[dict[str, Any]]:
        async with self._errors(), self._started().connect() as connection:
            return [dict(row) for row in (await connection.execute(_REPORT, {"category": category})).mappings()]

    async def write(self, slot: int, note: str) -> dict[str, Any]:
        assert self._writes is not None, "driver not started"
        async with self._errors(), self._writes.begin() as connection:
            return dict((await connection.execute(_WRITE, {"slot": slot, "note": note})).mappings().one())
