"""The catalogue: every scenario iobench serves and measures, as data.

A scenario is a workload (what one step does) done twice per request, in a route style
(how the route calls it), through a driver. The app builds its routes from this list and
the load tests read it to choose what to measure, so adding a driver is adding one entry
to ``DRIVERS`` and the module its ``factory`` names (db/drivers/__init__.py has the checklist).

Data only: drivers are named by ``"module:Class"`` strings that ``app/registry.py`` imports
when the service starts, so reading the catalogue (the load tests, ``iobench scenarios``)
loads no driver library.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Every request does its I/O twice, like the article's routes.
STEPS = 2


class Style(StrEnum):
    """How a route calls its driver: the article's four cases, plus the all-threadpool variant."""

    SYNC = "sync"
    ASYNC_BLOCKING = "async-blocking"
    ASYNC = "async"
    THREADPOOL = "threadpool"
    THREADPOOL_ONLY = "threadpool-only"
    MINIMAL = "minimal"

    @property
    def explanation(self) -> str:
        return _STYLE_TEXT[self]


_STYLE_TEXT = {
    Style.SYNC: "`def` route: FastAPI runs the whole handler in the AnyIO threadpool (article case 1)",
    Style.ASYNC_BLOCKING: "`async def` route calling the blocking call directly: it stalls the event loop (article case 2, on purpose)",
    Style.ASYNC: "`async def` route awaiting a native async call (article case 3)",
    Style.THREADPOOL: "`async def` route: step 1 `run_in_threadpool(blocking call)`, step 2 the native async twin (article case 4)",
    Style.THREADPOOL_ONLY: "`async def` route: both steps `run_in_threadpool(blocking call)` (a legacy driver with no async twin)",
    Style.MINIMAL: "hand-written route, as a performance-minded team writes one: no declared query model and no "
    "response model; it checks ?id= itself, calls the driver twice (`def` for a blocking driver, `async def` for an "
    "async one) and returns the JSON it wrote with json.dumps. The other styles declare their query model "
    "(`Annotated[Model, Query()]`) and return a dict that FastAPI validates against the inferred response model and "
    "serialises, as FastAPI's documentation writes a route: the gap is the framework's share, measured",
}


class Kind(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class Executor(StrEnum):
    """A thread pool an async driver hands its blocking calls to (the load-test model counts its threads)."""

    THREADPOOL = "threadpool"  # AnyIO's default limiter: the same tokens `def` routes hold
    ASYNCIO = "asyncio executor"  # asyncio's default ThreadPoolExecutor, min(32, cpu_count + 4) threads


@dataclass(frozen=True)
class Workload:
    """What one step of a request does; ``operation`` is the driver method it calls."""

    name: str
    operation: str
    description: str
    parameters: tuple[str, ...] = ()


WAIT = Workload("wait", "wait", "sleep S seconds: the article's stand-in for I/O", ("seconds",))
PG_SLEEP = Workload("pg_sleep", "pg_sleep", "SELECT pg_sleep(S): the article's wait, done by Postgres", ("seconds",))
LOOKUP = Workload("lookup", "lookup", "primary-key select of one item (random unless ?id=)", ("id",))
REPORT = Workload("report", "report", "join + aggregate over one category of items (a few ms of real work)", ("category",))
WRITE = Workload("write", "write", "upsert one row inside a transaction (a fixed set of slots, so load never grows the table)", ("slot", "note"))
FILE = Workload("file", "read_file", "read a whole file of the data folder: small.bin (4 KiB) or large.bin (8 MiB)", ("name",))
HELLO = Workload("hello", "hello", "the article's hello-world route: no I/O at all")

WORKLOADS: tuple[Workload, ...] = (WAIT, PG_SLEEP, LOOKUP, REPORT, WRITE, FILE, HELLO)
DATABASE_WORKLOADS = (PG_SLEEP, LOOKUP, REPORT, WRITE)


@dataclass(frozen=True)
class Transactions:
    """Server transactions one operation ends, as ``pg_stat_database`` counts them."""

    commits: int
    rollbacks: int


@dataclass(frozen=True)
class Setup:
    """How a Postgres driver is configured here, why, and what one operation sends for it.

    ``read`` (``pg_sleep``, ``lookup``, ``report``) and ``write`` list the statements of one
    operation on a warm connection, in order; ``"query"`` is the operation's own SQL, the rest
    is what the driver adds. Each is one round trip (the first run of a statement on a
    connection adds a Parse round trip for asyncpg; psycopg 3 sends Parse, Bind and Execute
    together). A statement outside BEGIN ... COMMIT/ROLLBACK is a transaction of its own.
    """

    summary: str
    docs: tuple[str, ...]
    read: tuple[str, ...]
    write: tuple[str, ...]

    def statements(self, workload: Workload) -> tuple[str, ...]:
        return self.write if workload is WRITE else self.read

    def transactions(self, workload: Workload) -> Transactions:
        commits = rollbacks = 0
        open_block = False
        for statement in self.statements(workload):
            word = statement.split()[0].upper()
            if word == "BEGIN":
                open_block = True
            elif word in ("COMMIT", "ROLLBACK"):
                open_block = False
                commits += word == "COMMIT"
                rollbacks += word == "ROLLBACK"
            elif not open_block:
                commits += 1
        return Transactions(commits, rollbacks)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "docs": list(self.docs), "read": list(self.read), "write": list(self.write)}


@dataclass(frozen=True)
class Driver:
    """One way of doing a workload's I/O.

    A sync driver is served as ``sync``, ``async-blocking`` and, when it names an
    ``async_twin``, ``threadpool`` (case 4: it does step 1 in the threadpool, the twin step 2);
    a ``legacy`` sync driver also gets ``threadpool-only``. An async driver is served as ``async``.

    ``factory`` is the ``"module:Class"`` that implements it: a ``pooled`` (Postgres) driver is
    built from its ``db.drivers.base.ConnectionConfig``, any other takes no arguments.
    ``distributions`` are the PyPI packages it runs on (/config reports their versions);
    ``executor`` names the thread pool an async driver hands its blocking calls to, if any.

    A Postgres driver runs in the equal-work configuration (every driver sends the same
    statements: autocommit reads, writes in one explicit transaction), described in ``setup``.
    An entry with ``defaults_of`` is that driver left at its out-of-the-box transaction and
    reset behaviour, served in its main style only, so a run shows how much of a gap between
    drivers is configuration. An entry with ``alternative_to`` is that driver on another pool,
    in the equal-work configuration, also served in its main style only, so a run shows what
    the pool costs.
    """

    name: str
    kind: Kind
    workloads: tuple[Workload, ...]
    factory: str
    description: str
    async_twin: str | None = None
    legacy: bool = False
    pooled: bool = False
    distributions: tuple[str, ...] = ()
    executor: Executor | None = None
    setup: Setup | None = None
    defaults_of: str | None = None
    alternative_to: str | None = None

    @property
    def variant_of(self) -> str | None:
        """The driver this entry is a variant of (``defaults_of`` or ``alternative_to``): it is served in its main style only."""
        return self.defaults_of or self.alternative_to

    @property
    def styles(self) -> tuple[Style, ...]:
        minimal = (Style.MINIMAL,) if self.pooled and not self.variant_of else ()
        if self.kind is Kind.ASYNC:
            return (Style.ASYNC, *minimal)
        if self.variant_of:
            return (Style.SYNC,)
        styles = [Style.SYNC, Style.ASYNC_BLOCKING, *minimal]
        if self.async_twin:
            styles.append(Style.THREADPOOL)
        if self.legacy:
            styles.append(Style.THREADPOOL_ONLY)
        return tuple(styles)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": str(self.kind),
            "workloads": [workload.name for workload in self.workloads],
            "styles": [str(style) for style in self.styles],
            "description": self.description,
            "async_twin": self.async_twin,
            "legacy": self.legacy,
            "pooled": self.pooled,
            "distributions": list(self.distributions),
            "executor": str(self.executor) if self.executor else None,
            "setup": self.setup.to_dict() if self.setup else None,
            "defaults_of": self.defaults_of,
            "alternative_to": self.alternative_to,
        }


# --- how each Postgres driver is set up, and what one operation sends -------------------------

_READ = ("query",)
_WRITE = ("BEGIN", "query", "COMMIT")
_PSYCOPG2_DOCS = "https://www.psycopg.org/docs/connection.html#connection.autocommit"
_PSYCOPG2_WITH = "https://www.psycopg.org/docs/usage.html#with-statement"
_PSYCOPG2_POOL = "https://www.psycopg.org/docs/pool.html"
_PSYCOPG3_DOCS = "https://www.psycopg.org/psycopg3/docs/basic/transactions.html"
_PSYCOPG3_POOL = "https://www.psycopg.org/psycopg3/docs/advanced/pool.html"
_PSYCOPG3_PREPARE = "https://www.psycopg.org/psycopg3/docs/advanced/prepare.html"
_ASYNCPG_POOL = "https://magicstack.github.io/asyncpg/current/api/index.html#connection-pools"
_SQLALCHEMY_AUTOCOMMIT = "https://docs.sqlalchemy.org/en/20/core/connections.html#setting-transaction-isolation-levels-including-dbapi-autocommit"
_SQLALCHEMY_RESET = "https://docs.sqlalchemy.org/en/20/core/pooling.html#reset-on-return"
_SQLALCHEMY_ASYNCPG = "https://docs.sqlalchemy.org/en/20/dialects/postgresql.html#prepared-statement-cache"
_QUEUEPOOL_MIN = "SQLAlchemy's QueuePool (pool_size = max, no overflow) has no minimum: iobench opens min connections at start."

PSYCOPG2 = Setup(
    "conn.autocommit = True in the QueuePool's creator: a read is its one statement, no BEGIN; the write runs in "
    "`with conn:` (since psycopg2 2.9 a transaction even in autocommit). psycopg2 binds parameters on the client: "
    f"no server-side prepared statements. {_QUEUEPOOL_MIN}",
    (_PSYCOPG2_DOCS, _PSYCOPG2_WITH), _READ, _WRITE)
PSYCOPG2_THREADED = Setup(
    "psycopg2's own psycopg2.pool.ThreadedConnectionPool instead of SQLAlchemy's QueuePool; connections open in "
    "autocommit (a connection_factory): a read is its one statement, no BEGIN; the write runs in `with conn:`. "
    "Made fit for a service by iobench: it keeps every connection it opens (psycopg2 closes one returned while minconn "
    "are idle), waits up to acquire_timeout for a free one (psycopg2 raises PoolError at once), opens a new one outside the "
    "pool's lock (psycopg2 connects under it) and min connections at start (psycopg2 opens minconn in its "
    "constructor); a connection the server closed is replaced "
    "at checkout, an unclean one closed at check-in. No server-side prepared statements.",
    (_PSYCOPG2_POOL, _PSYCOPG2_DOCS, _PSYCOPG2_WITH), _READ, _WRITE)
PSYCOPG2_DEFAULTS = Setup(
    "psycopg2 as connect() leaves it: autocommit off, so the first statement of a checkout sends BEGIN and the "
    "QueuePool rolls back at check-in (reset_on_return='rollback', its default); the write in `with conn:`.",
    (_PSYCOPG2_DOCS, _SQLALCHEMY_RESET), ("BEGIN", "query", "ROLLBACK"), _WRITE)
PSYCOPG3 = Setup(
    "psycopg_pool with kwargs={'autocommit': True}: a read is its one statement, no BEGIN; the write in "
    "conn.transaction(). Prepared statements at psycopg's defaults: prepared on a connection's 6th run of a statement "
    "(prepare_threshold=5), at most 100 (prepared_max). The pool keeps min_size connections open.",
    (_PSYCOPG3_DOCS, _PSYCOPG3_POOL, _PSYCOPG3_PREPARE), _READ, _WRITE)
PSYCOPG3_DEFAULTS = Setup(
    "psycopg's default, autocommit off: pool.connection() runs each checkout in a transaction it commits on return, "
    "so a read is BEGIN, query, COMMIT; the write in conn.transaction().",
    (_PSYCOPG3_DOCS, _PSYCOPG3_POOL), ("BEGIN", "query", "COMMIT"), _WRITE)
ASYNCPG = Setup(
    "create_pool(reset=<a coroutine that does nothing>) (asyncpg >= 0.30): on release the pool still rolls back a "
    "transaction left open, but skips its reset query (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *, RESET ALL), "
    "safe because no route leaves session state; reads outside a transaction, the write in "
    "connection.transaction(). Statement cache at asyncpg's default (statement_cache_size=100 per connection): a "
    "statement is prepared on its first run.",
    (_ASYNCPG_POOL,), _READ, _WRITE)
ASYNCPG_DEFAULTS = Setup(
    "create_pool's default reset: every release sends SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; "
    "RESET ALL; one more round trip and server transaction per checkout.",
    (_ASYNCPG_POOL,), ("query", "reset query"), (*_WRITE, "reset query"))
SQLALCHEMY_SYNC = Setup(
    "create_engine(isolation_level='AUTOCOMMIT'): a read is its one statement (the rollback at check-in sends nothing "
    "in autocommit); the write through engine.execution_options(isolation_level='READ COMMITTED'), SQLAlchemy's way "
    "to mix levels on one pool. psycopg2 then sends SET default_transaction_isolation TO DEFAULT each time a "
    "connection that wrote before leaves autocommit: one statement more per write than the other drivers, which no "
    "documented setting avoids. No server-side prepared statements (psycopg2). " + _QUEUEPOOL_MIN,
    (_SQLALCHEMY_AUTOCOMMIT,), _READ, ("SET default_transaction_isolation TO DEFAULT", *_WRITE))
SQLALCHEMY_SYNC_DEFAULTS = Setup(
    "create_engine's defaults: engine.connect() begins a transaction at the first statement and rolls it back on "
    "close, so a read is BEGIN, query, ROLLBACK; the write in engine.begin().",
    (_SQLALCHEMY_AUTOCOMMIT, _SQLALCHEMY_RESET), ("BEGIN", "query", "ROLLBACK"), _WRITE)
SQLALCHEMY_ASYNC = Setup(
    "create_async_engine(isolation_level='AUTOCOMMIT'): a read is its one statement; the write through "
    "engine.execution_options(isolation_level='READ COMMITTED') (on the asyncpg dialect a client-side switch: no "
    "extra statement). Its pool is SQLAlchemy's AsyncAdaptedQueuePool, not asyncpg's, so no asyncpg reset query. "
    "Statement cache at the dialect's default (prepared_statement_cache_size=100): prepared on the first run. "
    + _QUEUEPOOL_MIN,
    (_SQLALCHEMY_AUTOCOMMIT, _SQLALCHEMY_ASYNCPG), _READ, _WRITE)
SQLALCHEMY_ASYNC_DEFAULTS = Setup(
    "create_async_engine's defaults: each connection's first statement begins a transaction that is rolled back on "
    "close, so a read is BEGIN, query, ROLLBACK; the write in engine.begin().",
    (_SQLALCHEMY_AUTOCOMMIT, _SQLALCHEMY_RESET), ("BEGIN", "query", "ROLLBACK"), _WRITE)


DRIVERS: tuple[Driver, ...] = (
    Driver("time", Kind.SYNC, (WAIT,), "app.local_io:TimeSleep", "time.sleep", async_twin="asyncio"),
    Driver("asyncio", Kind.ASYNC, (WAIT,), "app.local_io:AsyncioSleep", "asyncio.sleep"),
    Driver("psycopg2", Kind.SYNC, DATABASE_WORKLOADS, "db.drivers.psycopg2:Psycopg2Database",
           "psycopg2 (blocking, the legacy driver) on a QueuePool", async_twin="asyncpg", legacy=True, pooled=True,
           distributions=("psycopg2-binary", "sqlalchemy"), setup=PSYCOPG2),
    Driver("psycopg3-sync", Kind.SYNC, DATABASE_WORKLOADS, "db.drivers.psycopg3:Psycopg3Database",
           "psycopg 3 blocking connections on psycopg_pool.ConnectionPool", async_twin="psycopg3-async", pooled=True,
           distributions=("psycopg", "psycopg-pool"), setup=PSYCOPG3),
    Driver("sqlalchemy-sync", Kind.SYNC, DATABASE_WORKLOADS, "db.drivers.sqlalchemy:SqlalchemyDatabase",
           "SQLAlchemy 2 Core, sync engine on psycopg2", async_twin="sqlalchemy-async", pooled=True,
           distributions=("sqlalchemy", "psycopg2-binary"), setup=SQLALCHEMY_SYNC),
    Driver("asyncpg", Kind.ASYNC, DATABASE_WORKLOADS, "db.drivers.asyncpg:AsyncpgDatabase", "asyncpg on its own pool",
           pooled=True, distributions=("asyncpg",), setup=ASYNCPG),
    Driver("psycopg3-async", Kind.ASYNC, DATABASE_WORKLOADS, "db.drivers.psycopg3:AsyncPsycopg3Database",
           "psycopg 3 async connections on psycopg_pool.AsyncConnectionPool", pooled=True,
           distributions=("psycopg", "psycopg-pool"), setup=PSYCOPG3),
    Driver("sqlalchemy-async", Kind.ASYNC, DATABASE_WORKLOADS, "db.drivers.sqlalchemy:AsyncSqlalchemyDatabase",
           "SQLAlchemy 2 Core, async engine on asyncpg", pooled=True, distributions=("sqlalchemy", "asyncpg"),
           setup=SQLALCHEMY_ASYNC),
    # The same six at their out-of-the-box transaction and reset behaviour: lookup and write, main style.
    Driver("psycopg2-defaults", Kind.SYNC, (LOOKUP, WRITE), "db.drivers.psycopg2:Psycopg2Database",
           "psycopg2 on a QueuePool, driver defaults", pooled=True, distributions=("psycopg2-binary", "sqlalchemy"),
           setup=PSYCOPG2_DEFAULTS, defaults_of="psycopg2"),
    Driver("psycopg3-sync-defaults", Kind.SYNC, (LOOKUP, WRITE), "db.drivers.psycopg3:Psycopg3Database",
           "psycopg 3 blocking connections on psycopg_pool.ConnectionPool, driver defaults", pooled=True,
           distributions=("psycopg", "psycopg-pool"), setup=PSYCOPG3_DEFAULTS, defaults_of="psycopg3-sync"),
    Driver("sqlalchemy-sync-defaults", Kind.SYNC, (LOOKUP, WRITE), "db.drivers.sqlalchemy:SqlalchemyDatabase",
           "SQLAlchemy 2 Core, sync engine on psycopg2, engine defaults", pooled=True,
           distributions=("sqlalchemy", "psycopg2-binary"), setup=SQLALCHEMY_SYNC_DEFAULTS, defaults_of="sqlalchemy-sync"),
    Driver("asyncpg-defaults", Kind.ASYNC, (LOOKUP, WRITE), "db.drivers.asyncpg:AsyncpgDatabase",
           "asyncpg on its own pool, driver defaults", pooled=True, distributions=("asyncpg",),
           setup=ASYNCPG_DEFAULTS, defaults_of="asyncpg"),
    Driver("psycopg3-async-defaults", Kind.ASYNC, (LOOKUP, WRITE), "db.drivers.psycopg3:AsyncPsycopg3Database",
           "psycopg 3 async connections on psycopg_pool.AsyncConnectionPool, driver defaults", pooled=True,
           distributions=("psycopg", "psycopg-pool"), setup=PSYCOPG3_DEFAULTS, defaults_of="psycopg3-async"),
    Driver("sqlalchemy-async-defaults", Kind.ASYNC, (LOOKUP, WRITE), "db.drivers.sqlalchemy:AsyncSqlalchemyDatabase",
           "SQLAlchemy 2 Core, async engine on asyncpg, engine defaults", pooled=True,
           distributions=("sqlalchemy", "asyncpg"), setup=SQLALCHEMY_ASYNC_DEFAULTS, defaults_of="sqlalchemy-async"),
    # psycopg2 on its own pool, equal work: lookup and write, main style, beside the QueuePool above.
    Driver("psycopg2-threaded", Kind.SYNC, (LOOKUP, WRITE), "db.drivers.psycopg2:ThreadedPsycopg2Database",
           "psycopg2 on its own ThreadedConnectionPool", pooled=True, distributions=("psycopg2-binary",),
           setup=PSYCOPG2_THREADED, alternative_to="psycopg2"),
    Driver("open", Kind.SYNC, (FILE,), "app.local_io:OpenFiles", "builtin open().read()", async_twin="aiofiles",
           legacy=True),
    Driver("aiofiles", Kind.ASYNC, (FILE,), "app.local_io:AiofilesFiles", "aiofiles (reads in asyncio's default executor)",
           distributions=("aiofiles",), executor=Executor.ASYNCIO),
    Driver("anyio", Kind.ASYNC, (FILE,), "app.local_io:AnyioFiles", "anyio.Path.read_bytes (reads in AnyIO's threadpool)",
           distributions=("anyio",), executor=Executor.THREADPOOL),
)
DRIVERS_BY_NAME = {driver.name: driver for driver in DRIVERS}

# The article's four cases, by the id of the scenario that reproduces each.
ARTICLE_CASES = {
    "wait/sync/time": 1,
    "wait/async-blocking/time": 2,
    "wait/async/asyncio": 3,
    "wait/threadpool/time": 4,
}


@dataclass(frozen=True)
class Scenario:
    """One route: a workload, in a style, through a driver."""

    workload: Workload
    style: Style
    driver: Driver
    path_override: str | None = None

    @property
    def id(self) -> str:
        return f"{self.workload.name}/{self.style}/{self.driver.name}"

    @property
    def path(self) -> str:
        return self.path_override or f"/bench/{self.id}"

    @property
    def twin(self) -> Driver | None:
        """The async driver doing step 2 in the ``threadpool`` style."""
        if self.style is Style.THREADPOOL and self.driver.async_twin:
            return DRIVERS_BY_NAME[self.driver.async_twin]
        return None

    @property
    def drivers(self) -> tuple[Driver, ...]:
        """Every driver the route uses (its own and, for ``threadpool``, the twin)."""
        return (self.driver,) if self.twin is None else (self.driver, self.twin)

    @property
    def article_case(self) -> int | None:
        return ARTICLE_CASES.get(self.id)

    @property
    def demonstrates(self) -> str:
        via = self.driver.description if self.twin is None else f"{self.driver.description}, then {self.twin.description}"
        return f"{self.workload.description}, twice; {self.style.explanation}; via {via}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workload": self.workload.name,
            "style": str(self.style),
            "driver": self.driver.name,
            "twin": self.twin.name if self.twin else None,
            "kind": str(self.driver.kind),
            "path": self.path,
            "parameters": list(self.workload.parameters),
            "pooled": any(driver.pooled for driver in self.drivers),
            "article_case": self.article_case,
            "demonstrates": self.demonstrates,
        }


_NO_IO = Driver("none", Kind.SYNC, (HELLO,), "app.local_io:NoIO", "no I/O")


#: The minimal style is the yardstick for the framework's share: one workload is enough to read it.
MINIMAL_WORKLOADS = (LOOKUP,)


def _build() -> Iterator[Scenario]:
    yield Scenario(HELLO, Style.SYNC, _NO_IO, path_override="/sync")
    yield Scenario(HELLO, Style.ASYNC, _NO_IO, path_override="/async")
    for workload in WORKLOADS:
        for driver in DRIVERS:
            if workload in driver.workloads:
                for style in driver.styles:
                    if style is not Style.MINIMAL or workload in MINIMAL_WORKLOADS:
                        yield Scenario(workload, style, driver)


SCENARIOS: tuple[Scenario, ...] = tuple(_build())
SCENARIOS_BY_ID = {scenario.id: scenario for scenario in SCENARIOS}


def select(
    workloads: set[str] | None = None, styles: set[str] | None = None, drivers: set[str] | None = None
) -> list[Scenario]:
    """Scenarios matching every given filter (``None`` matches all); a driver filter matches the twin too."""
    return [
        scenario
        for scenario in SCENARIOS
        if (workloads is None or scenario.workload.name in workloads)
        and (styles is None or str(scenario.style) in styles)
        and (drivers is None or any(driver.name in drivers for driver in scenario.drivers))
    ]


def markdown_table() -> str:
    """The catalogue as the scenario table of docs/styles.md (tests keep the two equal)."""
    lines = ["| scenario | path | style | driver | article case |", "|---|---|---|---|---|"]
    for scenario in SCENARIOS:
        driver = scenario.driver.name if scenario.twin is None else f"{scenario.driver.name} + {scenario.twin.name}"
        case = str(scenario.article_case or "")
        lines.append(f"| `{scenario.id}` | `{scenario.path}` | {scenario.style} | {driver} | {case} |")
    return "\n".join(lines)
