"""What every Postgres driver shares: its connection settings, the protocol the routes call,
and the mapping of failures to 503."""

from __future__ import annotations

import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

from db.errors import DatabaseUnavailable, Reason

QUERY_CANCELED = "57014"  # SQLSTATE raised when statement_timeout fires
#: SQLSTATEs of a server-side prepared statement that is not there, or not the one the driver
#: made: 26000 "prepared statement ... does not exist", 42P05 "... already exists". Behind
#: PgBouncer in transaction pooling (before 1.21) each transaction may run on another server
#: connection, which has other statements under the same names (or none).
LOST_PREPARED_STATEMENT = frozenset({"26000", "42P05"})
#: And what a statement of another client run under this client's name gives when the parameters
#: do not fit: 22P03 "incorrect binary data format in bind parameter", and these messages of 08P01
#: (a code PgBouncer also gives its own errors, such as "query_wait_timeout"). Counted as lost
#: statements only while the driver prepares statements on the server.
MISMATCHED_PREPARED_STATEMENT = "22P03"
MISMATCHED_BIND_MESSAGES = ("insufficient data left in message", "bind message supplies")
#: SQLSTATEs of a server that cannot take the connection now: class 08 (connection exception),
#: class 53 (insufficient resources: 53300 "too many clients", also a database's CONNECTION LIMIT)
#: and 57P03 (cannot connect now: starting up or shutting down). Each is a 503, never a 500.
UNAVAILABLE_SQLSTATES = ("08", "53", "57P03")


def refused_by_server(exc: BaseException) -> bool:
    """True if ``exc`` carries a SQLSTATE of a server that cannot serve this connection now."""
    return (sqlstate(exc) or "").startswith(UNAVAILABLE_SQLSTATES)


@dataclass(frozen=True)
class PoolSize:
    """Connection pool bounds for one driver."""

    min: int = 1
    max: int = 10

    def __post_init__(self) -> None:
        if self.min < 0:
            raise ValueError(f"pool min must be >= 0, got {self.min}")
        if self.max < 1:
            raise ValueError(f"pool max must be >= 1, got {self.max}")


@dataclass(frozen=True)
class ConnectionConfig:
    """How one driver connects: the URL of the iobench database, its pool bounds and timeouts.

    The service builds it from its settings (``app.settings.Settings.connection``); a driver
    module needs nothing else. ``driver_defaults`` leaves transactions and connection reset at
    the driver's out-of-the-box behaviour; otherwise every driver runs the equal-work
    configuration: reads in autocommit (one statement), the write in one explicit transaction.
    """

    driver: str
    url: str
    pool: PoolSize
    acquire_timeout: float
    connect_timeout: int
    statement_timeout_ms: int
    driver_defaults: bool = False
    prepared_statements: bool = True
    """False: the driver prepares no named statement on the server, as PgBouncer in transaction
    pooling before 1.21 needs (each transaction may run on another server connection). Each
    driver class says what it sets in its ``pgbouncer_setting``, from its own documentation:
    asyncpg ``statement_cache_size=0``, psycopg 3 ``prepare_threshold=None``, SQLAlchemy's
    asyncpg dialect ``connect_args={"statement_cache_size": 0}``; psycopg2 (alone or under
    SQLAlchemy) binds parameters on the client and never prepares, so it has none."""

    @property
    def application_name(self) -> str:
        # Lets pg_stat_activity count each driver's connections.
        return f"iobench-{self.driver}"

    @property
    def libpq_options(self) -> str:
        return f"-c statement_timeout={self.statement_timeout_ms}"

    @property
    def min_size(self) -> int:
        """The pool's minimum, never above its maximum."""
        return min(self.pool.min, self.pool.max)

    @property
    def configuration(self) -> str:
        return "driver defaults" if self.driver_defaults else "equal work"

    def pool_info(self, kind: str, min_policy: str, **live: Any) -> dict[str, Any]:
        """/config's view of the pool: its class, bounds, what ``min`` means for it, and live counts."""
        return {"driver": self.driver, "kind": kind, "configuration": self.configuration, "min": self.min_size,
                "max": self.pool.max, "min_policy": min_policy, "acquire_timeout": self.acquire_timeout, **live}


class DriverInstance(Protocol):
    """What the app's lifespan holds for each catalogue driver, Postgres or not (app/local_io.py).

    ``kind`` is ``"sync"`` (blocking calls) or ``"async"`` (coroutines). ``start`` and ``stop``
    open and close its pool, if any; ``pool_info`` describes that pool for /config, or is None.
    """

    kind: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def pool_info(self) -> dict[str, Any] | None: ...


class SyncDatabase(DriverInstance, Protocol):
    """A blocking Postgres driver: the four operations the routes call, each the shared SQL of
    ``db/queries.py`` (reads: one statement; ``write``: one upsert inside a transaction).

    The contract every driver keeps (tests/test_unavailable.py and tests/test_faults.py check it
    for every pooled driver of the catalogue):

    - A request the database cannot serve raises ``DatabaseUnavailable``, built by
      ``unavailable()``: ``database_unavailable`` when a connection is refused, lost or times
      out (``connect_timeout``), ``pool_timeout`` when no pooled connection frees up within
      ``acquire_timeout``, ``statement_timeout`` when the server cancels a query,
      ``prepared_statement`` when a statement it prepared on the server is gone (behind
      PgBouncer: ``lost_prepared_statement``). The service answers it as a JSON 503 at once.
      Any other exception is a bug (a 500).
    - ``config.prepared_statements=False`` makes it prepare no named statement on the server;
      its class names the driver setting that does it in ``pgbouncer_setting`` (None if it
      never prepares).
    - ``start`` succeeds with the database down: the service starts and answers 503 until the
      database is back, then 200 again from the same process, without a restart.
    - A pooled connection the server has closed is never handed to a request: the pool checks
      the socket at checkout (``peer_hung_up``, no round trip) and replaces it.
    - A connection goes back to its pool clean: no transaction left open and no query running,
      also after an error or a cancelled task.
    """

    config: ConnectionConfig

    def pg_sleep(self, seconds: float) -> float: ...
    def lookup(self, item_id: int) -> dict[str, Any] | None: ...
    def report(self, category: int) -> list[dict[str, Any]]: ...
    def write(self, slot: int, note: str) -> dict[str, Any]: ...


class AsyncDatabase(DriverInstance, Protocol):
    """An async Postgres driver: the operations of ``SyncDatabase`` as coroutines, same contract."""

    config: ConnectionConfig

    async def pg_sleep(self, seconds: float) -> float: ...
    async def lookup(self, item_id: int) -> dict[str, Any] | None: ...
    async def report(self, category: int) -> list[dict[str, Any]]: ...
    async def write(self, slot: int, note: str) -> dict[str, Any]: ...


def open_connections(connect: Callable[[], Any], count: int, errors: tuple[type[BaseException], ...]) -> int:
    """Check out ``count`` connections at once, then give them back: a pool that opens connections
    on demand (SQLAlchemy's QueuePool) then holds ``count`` idle, its minimum. A database that is
    down is no error here (requests answer 503 until it is back). Returns how many opened."""
    opened = []
    try:
        for _ in range(count):
            opened.append(connect())
    except errors:
        pass
    finally:
        for connection in opened:
            connection.close()
    return len(opened)


def is_sync_database(driver: DriverInstance) -> TypeGuard[SyncDatabase]:
    """True for a blocking Postgres driver (narrows the type for callers that hold any driver)."""
    return driver.kind == "sync" and callable(getattr(driver, "lookup", None))


def is_async_database(driver: DriverInstance) -> TypeGuard[AsyncDatabase]:
    """True for an async Postgres driver (narrows the type for callers that hold any driver)."""
    return driver.kind == "async" and callable(getattr(driver, "lookup", None))


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, looking through SQLAlchemy's wrapper (``.orig``)."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str):
            return code
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def lost_prepared_statement(config: ConnectionConfig, exc: BaseException) -> bool:
    """True if ``exc`` says a server-side prepared statement was missing or not the driver's own."""
    code = sqlstate(exc)
    if code in LOST_PREPARED_STATEMENT:
        return True
    mismatched = code == MISMATCHED_PREPARED_STATEMENT or (code == "08P01" and any(text in str(exc) for text in MISMATCHED_BIND_MESSAGES))
    return config.prepared_statements and mismatched


def unavailable(config: ConnectionConfig, exc: BaseException, reason: Reason | None = None,
                pgbouncer_setting: str | None = None) -> DatabaseUnavailable:
    """Wrap a driver error as the 503 the service answers with.

    A lost prepared statement is ``prepared_statement``, and its detail names the cause and the
    fix (``pgbouncer_setting``: the driver's own setting for it).
    """
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if reason is None:
        if lost_prepared_statement(config, exc):
            reason = "prepared_statement"
            fix = f" ({pgbouncer_setting})" if pgbouncer_setting else ""
            detail = (f"{detail}: the server lost a statement this driver prepared, as PgBouncer in transaction pooling "
                      f"(before 1.21) does; run with IOBENCH_PREPARED_STATEMENTS=false{fix}")
        elif sqlstate(exc) == QUERY_CANCELED:
            reason = "statement_timeout"
        else:
            reason = "database_unavailable"
    return DatabaseUnavailable(config.driver, reason, detail)


# Anything readable, or an error, on the socket of an idle connection.
_HUNG_UP = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0)


def peer_hung_up(fileno: int) -> bool:
    """True if the server has closed this idle connection (or is closing it).

    An idle Postgres connection gets nothing from the server until it sends a query, so
    anything readable on its socket is the server's goodbye: the FATAL message of a shutdown
    or restart, then the end of the stream (or a reset from whatever cut the link). The pools
    call this when they hand out a connection: one ``poll(2)`` with a zero timeout, a system
    call and no round trip, where a pre-ping (``SELECT 1``) would add one to every request.
    A link that dies silently (no FIN, no RST) is not seen here; its query fails and the pool
    drops it then.
    """
    poller = select.poll()
    poller.register(fileno, _HUNG_UP)
    return bool(poller.poll(0))
