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

    @property
    def explanation(self) -> str:
        return _STYLE_TEXT[self]


_STYLE_TEXT = {
    Style.SYNC: "`def` route: FastAPI runs the whole handler in the AnyIO threadpool (article case 1)",
    Style.ASYNC_BLOCKING: "`async def` route calling the blocking call directly: it stalls the event loop (article case 2, on purpose)",
    Style.ASYNC: "`async def` route awaiting a native async call (article case 3)",
    Style.THREADPOOL: "`async def` route: step 1 `run_in_threadpool(blocking call)`, step 2 the native async twin (article case 4)",
    Style.THREADPOOL_ONLY: "`async def` route: both steps `run_in_threadpool(blocking call)` (a legacy driver with no async twin)",
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
class Driver:
    """One way of doing a workload's I/O.

    A sync driver is served as ``sync``, ``async-blocking`` and, when it names an
    ``async_twin``, ``threadpool`` (case 4: it does step 1 in the threadpool, the twin step 2);
    a ``legacy`` sync driver also gets ``threadpool-only``. An async driver is served as ``async``.

    ``factory`` is the ``"module:Class"`` that implements it: a ``pooled`` (Postgres) driver is
    built from its ``db.drivers.base.ConnectionConfig``, any other takes no arguments.
    ``distributions`` are the PyPI packages it runs on (/config reports their versions);
    ``executor`` names the thread pool an async driver hands its blocking calls to, if any.
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

    @property
    def styles(self) -> tuple[Style, ...]:
        if self.kind is Kind.ASYNC:
            return (Style.ASYNC,)
        styles = [Style.SYNC, Style.ASYNC_BLOCKING]
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
        }


DRIVERS: tuple[Driver, ...] = (
    Driver("time", Kind.SYNC, (WAIT,), "app.local_io:TimeSleep", "time.sleep", async_twin="asyncio"),
    Driver("asyncio", Kind.ASYNC, (WAIT,), "app.local_io:AsyncioSleep", "asyncio.sleep"),
    Driver("psycopg2", Kind.SYNC, DATABASE_WORKLOADS, "db.drivers.psycopg2:Psycopg2Database",
           "psycopg2 (blocking, the legacy driver) on a QueuePool", async_twin="asyncpg", legacy=True, pooled=True,
           distributions=("psycopg2-binary", "sqlalchemy")),
    Driver("psycopg3-sync", Kind.SYNC, DATABASE_WORKLOADS, "db.drivers.psycopg3:Psycopg3Database",
           "psycopg 3 blocking connections on psycopg_pool.ConnectionPool", async_twin="psycopg3-async", pooled=True,
           distributions=("psycopg", "psycopg-pool")),
    Driver("sqlalchemy-sync", Kind.SYNC, DATABASE_WORKLOADS, "db.drivers.sqlalchemy:SqlalchemyDatabase",
           "SQLAlchemy 2 Core, sync engine on psycopg2", async_twin="sqlalchemy-async", pooled=True,
           distributions=("sqlalchemy", "psycopg2-binary")),
    Driver("asyncpg", Kind.ASYNC, DATABASE_WORKLOADS, "db.drivers.asyncpg:AsyncpgDatabase", "asyncpg on its own pool",
           pooled=True, distributions=("asyncpg",)),
    Driver("psycopg3-async", Kind.ASYNC, DATABASE_WORKLOADS, "db.drivers.psycopg3:AsyncPsycopg3Database",
           "psycopg 3 async connections on psycopg_pool.AsyncConnectionPool", pooled=True,
           distributions=("psycopg", "psycopg-pool")),
    Driver("sqlalchemy-async", Kind.ASYNC, DATABASE_WORKLOADS, "db.drivers.sqlalchemy:AsyncSqlalchemyDatabase",
           "SQLAlchemy 2 Core, async engine on asyncpg", pooled=True, distributions=("sqlalchemy", "asyncpg")),
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


def _build() -> Iterator[Scenario]:
    yield Scenario(HELLO, Style.SYNC, _NO_IO, path_override="/sync")
    yield Scenario(HELLO, Style.ASYNC, _NO_IO, path_override="/async")
    for workload in WORKLOADS:
        for driver in DRIVERS:
            if workload in driver.workloads:
                for style in driver.styles:
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
    """The catalogue as the README's scenario table (tests keep the two equal)."""
    lines = ["| scenario | path | style | driver | article case |", "|---|---|---|---|---|"]
    for scenario in SCENARIOS:
        driver = scenario.driver.name if scenario.twin is None else f"{scenario.driver.name} + {scenario.twin.name}"
        case = str(scenario.article_case or "")
        lines.append(f"| `{scenario.id}` | `{scenario.path}` | {scenario.style} | {driver} | {case} |")
    return "\n".join(lines)
