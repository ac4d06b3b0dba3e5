"""psycopg2: the blocking "legacy" driver, on two pools.

``Psycopg2Database`` pools it with SQLAlchemy's standalone ``QueuePool`` and a plain psycopg2
``creator``: a well-kept pool that waits for a free connection and keeps the ones it opens.
QueuePool has no minimum: ``start`` opens ``min`` connections, which it then keeps.
``ThreadedPsycopg2Database`` uses psycopg2's own ``ThreadedConnectionPool``, made fit for a
service (its docstring says how), so a run shows what the heavier pool costs.

Equal work: every connection is in autocommit, so a read is its one statement; the write runs
in ``with connection:``, which since psycopg2 2.9 is a transaction (BEGIN ... COMMIT) in
autocommit too. With ``driver_defaults`` (QueuePool only) autocommit stays off: every
checkout's first statement sends BEGIN and the QueuePool rolls back at check-in.

A pool hands out whatever it holds: after a database restart or a cut link every pooled
connection is dead, and each would fail one request. Both pools look at the socket as a
connection is handed out (``peer_hung_up``, no round trip) and replace one the server closed.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
import psycopg2
import psycopg2.extensions
import sqlalchemy.exc
from psycopg2.pool import PoolError, ThreadedConnectionPool
from sqlalchemy import event
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from db import queries
from db.drivers.base import ConnectionConfig, open_connections, peer_hung_up, unavailable

_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError, OSError)
QUEUEPOOL_MIN_POLICY = "opened at start by iobench (QueuePool has no minimum); a lost connection is reopened on demand"
_THREADED_MIN_POLICY = ("opened at start by iobench (ThreadedConnectionPool would open minconn in its constructor); "
                        "every connection opened is kept; a lost connection is reopened on demand")
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


class _Psycopg2Operations:
    """The four operations on a connection from ``_connection``: the pools differ, the SQL and transactions do not."""

    kind = "sync"
    #: None: psycopg2 binds parameters on the client and never prepares a statement on the
    #: server, so PgBouncer's transaction pooling needs no setting
    #: (https://www.psycopg.org/psycopg3/docs/basic/from_pg2.html#server-side-binding).
    pgbouncer_setting = None
    config: ConnectionConfig

    def _connection(self) -> AbstractContextManager[psycopg2.extensions.connection]:
        raise NotImplementedError

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


class Psycopg2Database(_Psycopg2Operations):
    """Blocking psycopg2 calls over a QueuePool (of autocommit connections, unless driver defaults)."""

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


class _AutocommitConnection(psycopg2.extensions.connection):
    """A psycopg2 connection that starts in autocommit (``connection_factory``: the pool opens its own)."""

    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(dsn, *args, **kwargs)
        self.autocommit = True


class _ServicePool(ThreadedConnectionPool):
    """psycopg2's ``ThreadedConnectionPool``, but a new connection is opened outside the pool's lock.

    psycopg2 connects while it holds the lock, so while the database does not answer every
    checkout, even one an idle connection could serve, waits out each connect ahead of it
    (``connect_timeout`` apiece: tests/test_faults.py's blackhole saw a request wait two). Here the
    connection is opened first, then put in the idle list and checked out by psycopg2's own code.
    """

    # psycopg2's own state, which its type stubs leave out.
    _lock: threading.Lock
    _pool: list[psycopg2.extensions.connection]
    _used: dict[Hashable, psycopg2.extensions.connection]
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any]
    if TYPE_CHECKING:
        def _getconn(self, key: Hashable | None = None) -> psycopg2.extensions.connection: ...

    def getconn(self, key: Hashable | None = None) -> psycopg2.extensions.connection:
        with self._lock:
            if self._pool or self.closed:  # an idle connection, or psycopg2's PoolError once closed
                return self._getconn(key)
        opened = psycopg2.connect(*self._args, **self._kwargs)
        with self._lock:
            self._pool.append(opened)
            try:
                return self._getconn(key)
            except PoolError:  # closed meanwhile: closeall has run and will not close this one
                opened.close()
                raise


class ThreadedPsycopg2Database(_Psycopg2Operations):
    """Blocking psycopg2 calls over psycopg2's own ``ThreadedConnectionPool``, in the equal-work configuration.

    What it changes from psycopg2's defaults, so that the pool serves a service as QueuePool does:

    - It keeps every connection it opens. ``putconn`` closes a connection returned while
      ``minconn`` are idle, and the constructor opens ``minconn`` at once (failing if the
      database is down): the pool is built with ``minconn=0`` and ``minconn`` then raised to
      ``max``, and ``start`` opens ``config.min_size`` connections as the other drivers do.
    - It waits for a free connection. ``getconn`` raises ``PoolError`` at once when ``max`` are
      in use; a ``BoundedSemaphore(max)`` taken with ``acquire_timeout`` makes a request wait,
      then answer 503 ``pool_timeout``, as QueuePool's timeout does.
    - It opens a new connection outside the pool's lock (``_ServicePool``): psycopg2 connects
      under it, so with a database that does not answer each checkout waited out the others'.
    - It never hands out a connection the server closed (``peer_hung_up``, as
      ``drop_closed_on_checkout``), and it closes one returned unclean (not idle: a query still
      running, a transaction open, or broken) instead of rolling it back into the pool.

    What the QueuePool path does per checkout that this one does not (sqlalchemy/pool/base.py):
    QueuePool's queue is a Condition-guarded deque; ``_ConnectionRecord.checkout`` checks the
    record's recycle and invalidation times and wraps the connection in a new
    ``_ConnectionFairy``, with a ``weakref.finalize`` destructor and a ``weakref.ref`` from the
    record; the ``checkout`` event runs our ``drop_closed_on_checkout`` through SQLAlchemy's
    event dispatch. At check-in ``_finalize_fairy`` resets it (``reset_on_return='rollback'``:
    ``connection.rollback()``, no round trip in autocommit), detaches the finalizer, runs the
    ``checkin`` event and puts the record back. Here: a semaphore, one lock, a list pop and two
    dict entries, the same socket check, and a status read at check-in. In-process, checkout and
    check-in alone (2000 calls, cProfile): QueuePool 16 µs and 66 Python calls, this pool 8 µs
    and 43; at two checkouts per request, 16 µs less of a lookup route's 1.5-2 ms of service CPU
    under load on the 2-core machine. ``ab -n 3000 -c 40``, 16 threadpool tokens, pools of 16, the two
    lookup routes alternated three times, twice: threaded/QueuePool 0.95 and 1.04 on the
    averages, pair by pair 0.77-1.17, which is this machine's noise; no gap to read. The
    hand-written ``minimal`` route beat ``lookup/sync/psycopg2`` by 1/0.70 in the same session:
    that gap is the framework's share (app/routes.py), not the pool.
    """

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._pool: _ServicePool | None = None
        self._free = threading.BoundedSemaphore(config.pool.max)

    async def start(self) -> None:
        pool = _ServicePool(
            0, self.config.pool.max, self.config.url,
            connection_factory=_AutocommitConnection,
            connect_timeout=self.config.connect_timeout,
            options=self.config.libpq_options,
            application_name=self.config.application_name,
        )
        pool.minconn = pool.maxconn  # keep every connection returned (see the class docstring)
        self._pool = pool
        await anyio.to_thread.run_sync(self._open, self.config.min_size)

    async def stop(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await anyio.to_thread.run_sync(pool.closeall)

    def pool_info(self) -> dict[str, Any]:
        pool = self._pool
        # psycopg2's pool has no public counts: its idle list and its map of connections in use.
        live = {"open": len(pool._pool) + len(pool._used), "in_use": len(pool._used)} if pool else {}
        return self.config.pool_info("psycopg2.pool.ThreadedConnectionPool", _THREADED_MIN_POLICY, **live)

    def _open(self, count: int) -> None:
        """Open ``count`` connections and keep them idle (a database that is down is no error here)."""
        assert self._pool is not None
        opened = []
        try:
            for _ in range(count):
                opened.append(self._pool.getconn())
        except _CONNECTION_ERRORS:
            pass
        finally:
            for connection in opened:
                self._pool.putconn(connection)

    def _checkout(self, pool: _ServicePool) -> psycopg2.extensions.connection:
        """A live connection: idle ones the server closed are dropped, at worst every one, then a new one opens."""
        for _ in range(self.config.pool.max + 1):
            connection = pool.getconn()
            if not (connection.closed or peer_hung_up(connection.fileno())):
                return connection
            pool.putconn(connection, close=True)
        raise psycopg2.OperationalError("the server closed every connection, a new one too")

    @contextmanager
    def _connection(self) -> Iterator[psycopg2.extensions.connection]:
        pool = self._pool
        assert pool is not None, "driver not started"
        if not self._free.acquire(timeout=self.config.acquire_timeout):
            waited = TimeoutError(f"no pooled connection free within {self.config.acquire_timeout:g} s "
                                  f"(all {self.config.pool.max} in use)")
            raise unavailable(self.config, waited, "pool_timeout")
        try:
            try:
                connection = self._checkout(pool)
            except _CONNECTION_ERRORS as exc:
                raise unavailable(self.config, exc) from exc
            try:
                yield connection
            except _CONNECTION_ERRORS as exc:
                raise unavailable(self.config, exc) from exc
            finally:
                clean = not connection.closed and (
                    connection.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE)
                if pool.closed:  # stopped while this request ran: closeall has closed it already
                    connection.close()
                else:
                    pool.putconn(connection, close=not clean)
        finally:
            self._free.release()
