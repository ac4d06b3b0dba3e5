"""psycopg2: the blocking "legacy" driver, pooled with SQLAlchemy's standalone QueuePool.

psycopg2's own ``ThreadedConnectionPool`` raises at once when exhausted and closes every
connection returned above ``minconn``; a real service would wait and keep its connections,
so we use the well-kept ``sqlalchemy.pool.QueuePool`` with a plain psycopg2 ``creator``.
QueuePool has no minimum: ``start`` opens ``min`` connections, which it then keeps.

Equal work: the creator sets ``autocommit = True``, so a read is its one statement; the write
runs in ``with connection:``, which since psycopg2 2.9 is a transaction (BEGIN ... COMMIT) in
autocommit too. With ``driver_defaults`` autocommit stays off: every checkout's first statement
sends BEGIN and the QueuePool rolls back at check-in.

A QueuePool hands out whatever it holds: after a database restart or a cut link every pooled
connection is dead, and each would fail one request. ``drop_closed_on_checkout`` looks at the
socket as a connection is handed out (no round trip) and has SQLAlchemy replace it, and every
connection opened before it, instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import anyio.to_thread
import psycopg2
import psycopg2.extensions
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from db import queries
from db.drivers.base import ConnectionConfig, open_connections, peer_hung_up, unavailable

_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError, OSError)
QUEUEPOOL_MIN_POLICY = "opened at start by iobench (QueuePool has no minimum); a lost connection is reopened on demand"
_ENDED_BY_ROLLBACK = (psycopg2.extensions.TRANSACTION_STATUS_INTRANS, psycopg2.extensions.TRANSACTION_STATUS_INERROR)


def queuepool_info(config: ConnectionConfig, pool: Any, kind: str) -> dict[str, Any]:
    """/config's view of a QueuePool (this module's, or a SQLAlchemy engine's): its bounds and, once
    started, the connections it holds open and those in use."""
    live = {"open": pool.checkedin() + pool.checkedout(), "in_use": pool.checkedout()} if isinstance(pool, QueuePool) else {}
    return config.pool_info(kind, QUEUEPOOL_MIN_POLICY, **live)


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
    """Blocking psycopg2 calls over a QueuePool (of autocommit connections, unless driver defaults)."""

    kind = "sync"
    #: None: psycopg2 binds parameters on the client and never prepares a statement on the
    #: server, so PgBouncer's transaction pooling needs no setting
    #: (https://www.psycopg.org/psycopg3/docs/basic/from_pg2.html#server-side-binding).
    pgbouncer_setting = None

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._pool: QueuePool | None = None

    async def start(self) -> None:
        self._pool = QueuePool(
            self._connect,  # type: ignore[arg-type]  # psycopg2's stubs lack the __getattr__ of SQLAlchemy's DBAPIConnection protocol
            pool_size=self.config.pool.max,
            max_overflow=0,
            timeout=self.config.acquire_timeout,
            reset_on_return="rollback",
        )
        event.listen(self._pool, "checkout", drop_closed_on_checkout)
        await anyio.to_thread.run_sync(open_connections, self._pool.connect, self.config.min_size, _CONNECTION_ERRORS)

    async def stop(self) -> None:
        if self._pool is not None:
            await anyio.to_thread.run_sync(self._pool.dispose)
            self._pool = None

    def pool_info(self) -> dict[str, Any]:
        return queuepool_info(self.config, self._pool, "sqlalchemy.pool.QueuePool")

    def _connect(self) -> psycopg2.extensions.connection:
        connection = psycopg2.connect(
            self.config.url,
            connect_timeout=self.config.connect_timeout,
            options=self.config.libpq_options,
            application_name=self.config.application_name,
        )
        connection.autocommit = not self.config.driver_defaults
        return connection

    @contextmanager
    def _connection(self) -> Iterator[psycopg2.extensions.connection]:
        assert self._pool is not None, "driver not started"
        try:
            fairy = self._pool.connect()
        except sqlalchemy.exc.TimeoutError as exc:
            raise unavailable(self.config, exc, "pool_timeout") from exc
        except _CONNECTION_ERRORS as exc:
            raise unavailable(self.config, exc) from exc
        # What _connect returned (SQLAlchemy types it as its DBAPI protocol, None once the fairy is closed).
        connection = cast(psycopg2.extensions.connection, fairy.dbapi_connection)
        try:
            yield connection
        except _CONNECTION_ERRORS as exc:
            raise unavailable(self.config, exc) from exc
        finally:
            # The QueuePool's rollback at check-in ends a transaction only outside autocommit;
            # any other state (closed, a query still running, a transaction in autocommit) is
            # discarded rather than handed to the next request.
            status = connection.info.transaction_status if not connection.closed else None
            clean = status == psycopg2.extensions.TRANSACTION_STATUS_IDLE or (
                not connection.autocommit and status in _ENDED_BY_ROLLBACK
            )
            if not clean:
                fairy.invalidate()
            fairy.close()

    @contextmanager
    def _cursor(self) -> Iterator[psycopg2.extensions.cursor]:
        with self._connection() as connection, connection.cursor() as cursor:
            yield cursor

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
        with self._connection() as connection, connection, connection.cursor() as cursor:
            cursor.execute(queries.WRITE.pyformat, {"slot": slot, "note": note})
            row = cursor.fetchone()
        assert row is not None
        return dict(zip(queries.WRITE_COLUMNS, row, strict=True))
