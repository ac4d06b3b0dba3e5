"""psycopg2: the blocking "legacy" driver, pooled with SQLAlchemy's standalone QueuePool.

psycopg2's own ``ThreadedConnectionPool`` raises at once when exhausted and closes every
connection returned above ``minconn``; a real service would wait and keep its connections,
so we use the well-kept ``sqlalchemy.pool.QueuePool`` with a plain psycopg2 ``creator``.
Connections run in autocommit, like asyncpg's, so a read is one round trip.

A QueuePool hands out whatever it holds: after a database restart or a cut link every pooled
connection is dead, and each would fail one request. ``drop_closed_on_checkout`` looks at the
socket as a connection is handed out (no round trip) and has SQLAlchemy replace it, and every
connection opened before it, instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio.to_thread
import psycopg2
import psycopg2.extensions
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from db import queries
from db.drivers.base import ConnectionConfig, peer_hung_up, unavailable

_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError, OSError)


def drop_closed_on_checkout(
    dbapi_connection: psycopg2.extensions.connection, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    """Pool ``checkout`` hook: refuse a connection the server has closed.

    Raising ``InvalidatePoolError`` makes SQLAlchemy reconnect this entry (the request gets a
    fresh connection, or the connect error if the database is still down) and recycle every
    other connection opened before now at its next checkout, as its own pre-ping does, minus
    the ``SELECT 1`` round trip on every checkout.
    """
    if dbapi_connection.closed or peer_hung_up(dbapi_connection.fileno()):
        raise sqlalchemy.exc.InvalidatePoolError("the server closed this pooled connection")


class Psycopg2Database:
    """Blocking psycopg2 calls over a QueuePool of autocommit connections."""

    kind = "sync"

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._pool: QueuePool | None = None

    async def start(self) -> None:
        self._pool = QueuePool(
            self._connect,
            pool_size=self.config.pool.max,
            max_overflow=0,
            timeout=self.config.acquire_timeout,
            reset_on_return="rollback",
        )
        event.listen(self._pool, "checkout", drop_closed_on_checkout)

    async def stop(self) -> None:
        if self._pool is not None:
            await anyio.to_thread.run_sync(self._pool.dispose)
            self._pool = None

    def pool_info(self) -> dict[str, Any]:
        live = {"open": self._pool.checkedin() + self._pool.checkedout(), "in_use": self._pool.checkedout()} if self._pool else {}
        return self.config.pool_info("sqlalchemy.pool.QueuePool (opened on demand)", **live)

    def _connect(self) -> psycopg2.extensions.connection:
        connection = psycopg2.connect(
            self.config.url,
            connect_timeout=self.config.connect_timeout,
            options=self.config.libpq_options,
            application_name=self.config.application_name,
        )
        connection.autocommit = True
        return connection

    @contextmanager
    def _cursor(self) -> Iterator[psycopg2.extensions.cursor]:
        assert self._pool is not None, "driver not started"
        try:
            fairy = self._pool.connect()
        except sqlalchemy.exc.TimeoutError as exc:
            raise unavailable(self.config, exc, "pool_timeout") from exc
        except _CONNECTION_ERRORS as exc:
            raise unavailable(self.config, exc) from exc
        try:
            with fairy.cursor() as cursor:
                yield cursor
        except _CONNECTION_ERRORS as exc:
            raise unavailable(self.config, exc) from exc
        finally:
            connection = fairy.dbapi_connection
            # Autocommit hides our explicit BEGIN from psycopg2's rollback(): a connection left
            # inside a transaction (an error mid-write) is discarded rather than reused.
            if connection is not None and (
                connection.closed
                or connection.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE
            ):
                fairy.invalidate()
            fairy.close()

    def pg_sleep(self, seconds: float) -> float:
        with self._cursor() as cursor:
            cursor.execute(queries.PG_SLEEP.pyformat, {"seconds": seconds})
        return seconds

    def lookup(self, item_id: int) -> dict[str, Any] | None:
        with self._cursor() as cursor:
            cursor.execute(queries.LOOKUP.pyformat, {"item_id": item_id})
            row = cursor.fetchone()
        return dict(zip(queries.LOOKUP_COLUMNS, row, strict=True)) if row else None

    def report(self, category: int) -> list[dict[str, Any]]:
        with self._cursor() as cursor:
            cursor.execute(queries.REPORT.pyformat, {"category": category})
            rows = cursor.fetchall()
        return [dict(zip(queries.REPORT_COLUMNS, row, strict=True)) for row in rows]

    def write(self, slot: int, note: str) -> dict[str, Any]:
        with self._cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(queries.WRITE.pyformat, {"slot": slot, "note": note})
            row = cursor.fetchone()
            cursor.execute("COMMIT")
        return dict(zip(queries.WRITE_COLUMNS, row, strict=True))
