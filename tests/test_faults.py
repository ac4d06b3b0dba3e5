"""Database faults, overload, disconnects and connection accounting, on the real service and the real Postgres.

The service runs as a real uvicorn process (``loadtests.server.ServiceProcess``). Where a test
breaks the database, the service's DATABASE_URL points at a ``TcpProxy`` (tests/tcp_proxy.py)
running in this process, which cuts, blackholes or slows the link while the shared Postgres
keeps running. Each server gets its own freshly seeded database, so ``pg_stat_activity`` can be
read exactly: by ``datname`` and by the ``application_name`` every driver sets, ``iobench-<driver>``.

Connections: every server here has pools of at most 3 or 4 per driver (18 to 24 in all) and only
one server runs at a time (the fault-injection server is class-scoped).

What a request does on a fault, and what is asserted, in short:

- database cut (refused or blackholed) under load: a JSON 503 (``database_unavailable``, or
  ``pool_timeout`` while connects hang) within connect_timeout + acquire_timeout, never a hang;
  200 again within 5 s of the database coming back, from the same process; pooled connections
  the server closed are never handed to a request (``test_connections_closed_while_idle...``);
- overload (30 concurrent slow queries on a pool of 3): 200 or 503 ``pool_timeout``, bounded by
  the acquire timeout; no deadlock between threadpool tokens and pool connections;
- client disconnects and task cancellation: no query left running, no transaction left open,
  the next request on the same pool gets a clean connection;
- 10,000 mixed requests: never more server connections than the pools' maxima, none after shutdown.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from app.catalogue import DRIVERS, DRIVERS_BY_NAME, PG_SLEEP, STEPS, Kind
from app.prepare import prepare
from app.registry import open_driver
from app.settings import Settings
from db.drivers.base import is_async_database
from loadtests.server import ServiceProcess

pytestmark = pytest.mark.postgres  # every test here runs against the session's test database

DB_DRIVERS = [driver.name for driver in DRIVERS if driver.pooled]
#: The drivers with a pg_sleep route: a request that holds its connection as long as asked.
SLEEPING_DRIVERS = [driver.name for driver in DRIVERS if driver.pooled and PG_SLEEP in driver.workloads]
ASYNC_DB_DRIVERS = [driver.name for driver in DRIVERS if driver.pooled and driver.kind is Kind.ASYNC]
ITEM = 7  # an id every seeded database has
OUTAGE_ERRORS = {"database_unavailable", "pool_timeout"}
#: Added to every time bound: a 2-core machine running Postgres, the server and the clients.
MARGIN = 1.5
RECOVERY = 5.0  # seconds after the database comes back by which every route must answer 200 again


def own_style(driver: str, workload: str = "lookup") -> str:
    """The driver's own route: ``sync`` (a `def` route) for a blocking driver, ``async`` for an async one."""
    style = "async" if DRIVERS_BY_NAME[driver].kind is Kind.ASYNC else "sync"
    return f"/bench/{workload}/{style}/{driver}"


def lookup(driver: str) -> str:
    return f"{own_style(driver)}?id={ITEM}"


# --- fixtures: a fresh database per server, pg_stat_activity --------------------------------------


@pytest.fixture(scope="module")
def fresh_settings(settings: Settings, empty_database_factory: Callable[[], str]) -> Callable[..., Settings]:
    """Call it for the session's settings on a new migrated and seeded database, with overrides."""

    def make(**overrides: Any) -> Settings:
        url = empty_database_factory()
        prepare(url, settings)
        return settings.model_copy(update={"database_url": url, "port": 0, **overrides})

    return make


def database_name(settings: Settings) -> str:
    name = make_url(settings.database_url or "").database
    assert name, settings.database_url
    return name


class Activity:
    """``pg_stat_activity`` for the app's connections to one database, over a connection of our own
    (to the maintenance database, and not named ``iobench-*``, so it never counts itself)."""

    def __init__(self, server_url: str, database: str) -> None:
        self.database = database
        self._connection = psycopg.connect(server_url, autocommit=True, application_name="faults-monitor")
        self._lock = threading.Lock()

    def backends(self) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._connection.cursor(row_factory=psycopg.rows.dict_row)
            return cursor.execute(
                "SELECT application_name AS app, state, query, wait_event_type,"
                " extract(epoch FROM clock_timestamp() - query_start)::float AS running_for"
                " FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'iobench-%%'",
                [self.database],
            ).fetchall()

    def count(self) -> int:
        return len(self.backends())

    def busy(self) -> list[dict[str, Any]]:
        """Backends running a statement or holding a transaction open."""
        return [row for row in self.backends() if row["state"] != "idle"]

    def close(self) -> None:
        self._connection.close()


@pytest.fixture
def activity_for(pg_server: str) -> Iterator[Callable[[Settings], Activity]]:
    opened: list[Activity] = []

    def make(settings: Settings) -> Activity:
        opened.append(Activity(pg_server, database_name(settings)))
        return opened[-1]

    yield make
    for activity in opened:
        activity.close()


def upstream(pg_server: str) -> tuple[str, int]:
    url = make_url(pg_server)
    return url.host or "127.0.0.1", url.port or 5432


# --- a load of workers, each requesting its route in a loop ------------------------------------


@dataclass
class Outcome:
    path: str
    started: float
    ended: float
    status: int | None  # None: no response (client timeout or a broken HTTP connection)
    body: Any = None
    error: str | None = None

    @property
    def elapsed(self) -> float:
        return self.ended - self.started


@dataclass
class Load:
    """``workers`` loops per path, each sending one request after the other until the load stops.

    Every request is bounded client-side by ``timeout``: a request that reaches it is recorded
    with ``status=None``, i.e. the service hung.
    """

    base_url: str
    paths: list[str]
    workers: int
    timeout: float
    outcomes: list[Outcome] = field(default_factory=list)

    async def __aenter__(self) -> Self:
        total = len(self.paths) * self.workers
        # keepalive_expiry below uvicorn's 5 s keep-alive, so the client never reuses a connection
        # the server is closing (that race would read as a broken response, not as a fault).
        limits = httpx.Limits(max_connections=total, max_keepalive_connections=total, keepalive_expiry=1.0)
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, limits=limits)
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._work(path)) for path in self.paths for _ in range(self.workers)]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._client.aclose()

    async def _work(self, path: str) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = await self._client.get(path)
            except httpx.HTTPError as exc:
                self.outcomes.append(Outcome(path, started, time.monotonic(), None, error=f"{type(exc).__name__}: {exc}"))
            else:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                self.outcomes.append(Outcome(path, started, time.monotonic(), response.status_code, body))
                if response.status_code == 200:
                    continue
            await asyncio.sleep(0.05)  # an outage answers at once: do not spin

    def of(self, path: str) -> list[Outcome]:
        return sorted((o for o in self.outcomes if o.path == path), key=lambda o: o.started)

    async def until_all_ok(self, since: float, timeout: float) -> dict[str, float]:
        """Seconds from ``since`` to each path's first 200 for a request sent after it (waits up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        back: dict[str, float] = {}
        while time.monotonic() < deadline and len(back) < len(self.paths):
            for path in self.paths:
                if path not in back:
                    ok = [o.ended for o in self.outcomes if o.path == path and o.started >= since and o.status == 200]
                    if ok:
                        back[path] = min(ok) - since
            await asyncio.sleep(0.05)
        return back


def body_is_correct(outcome: Outcome) -> bool:
    """A 200's body carries what the request asked for."""
    body = outcome.body
    if not isinstance(body, dict) or body.get("steps") != STEPS:
        return False
    if "/lookup/" in outcome.path:
        return isinstance(body.get("result"), dict) and body["result"].get("id") == ITEM
    if "/pg_sleep/" in outcome.path:
        return isinstance(body.get("result"), int | float)
    return True


def is_503(outcome: Outcome, errors: set[str]) -> bool:
    body = outcome.body
    return (
        outcome.status == 503
        and isinstance(body, dict)
        and set(body) == {"error", "driver", "detail"}
        and body["error"] in errors
        and bool(body["detail"])
    )


def outage_problems(load: Load, cut_at: float, restored_at: float, bound: float, back: dict[str, float]) -> list[str]:
    """Everything wrong with how each path went through an outage (empty: all as it should be)."""
    problems = []
    for path in load.paths:
        outcomes = load.of(path)
        hung = [o for o in outcomes if o.status is None]
        slow = [o for o in outcomes if o.elapsed > bound]
        wrong = [o for o in outcomes if not (o.status == 200 and body_is_correct(o)) and not is_503(o, OUTAGE_ERRORS)]
        before = [o for o in outcomes if o.ended < cut_at]
        # Sent after the cut and answered before the restore: the database was unreachable throughout.
        during = [o for o in outcomes if o.started >= cut_at and o.ended < restored_at]
        recovered = back.get(path)
        after_recovery = [o for o in outcomes if recovered is not None and o.started >= restored_at + recovered]
        if hung:
            problems.append(f"{path}: {len(hung)} requests got no answer within {load.timeout:.1f} s: {hung[0].error}")
        if slow:
            problems.append(f"{path}: {len(slow)} requests took more than {bound:.1f} s (max {max(o.elapsed for o in slow):.2f} s)")
        if wrong:
            problems.append(f"{path}: {len(wrong)} answers neither a correct 200 nor a JSON 503: {wrong[0].status} {wrong[0].body!r:.200}")
        if not before or any(o.status != 200 for o in before):
            problems.append(f"{path}: not all 200 before the cut: {Counter(o.status for o in before)}")
        if not during or any(o.status != 503 for o in during):
            problems.append(f"{path}: during the outage expected only 503s, got {Counter(o.status for o in during)}")
        if recovered is None or recovered > RECOVERY:
            problems.append(f"{path}: no 200 within {RECOVERY} s of the database coming back")
        elif any(o.status != 200 for o in after_recovery):
            bad = next(o for o in after_recovery if o.status != 200)
            problems.append(f"{path}: a {bad.status} after it had recovered: {bad.body!r:.200}")
    return problems


async def all_healthy(client: httpx.AsyncClient) -> None:
    """Wait until every driver answers a lookup with 200 (at most RECOVERY seconds)."""
    deadline = time.monotonic() + RECOVERY
    for driver in DB_DRIVERS:
        while (response := await client.get(lookup(driver))).status_code != 200:
            assert time.monotonic() < deadline, f"{driver} not healthy: {response.text}"
            await asyncio.sleep(0.1)


async def server_pid(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        return int((await client.get("/config")).json()["pid"])


# --- the database goes away under load ----------------------------------------------------------

CONNECT_TIMEOUT = 2
ACQUIRE_TIMEOUT = 2.0
#: A request that fails waits at most for a pool slot, then for a connection attempt.
OUTAGE_BOUND = CONNECT_TIMEOUT + ACQUIRE_TIMEOUT + MARGIN


@pytest.fixture(scope="class")
def proxy(pg_server: str) -> Iterator[TcpProxy]:
    with TcpProxy(upstream(pg_server)) as proxy:
        yield proxy


@pytest.fixture(scope="class")
def server(
    proxy: TcpProxy, fresh_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The service on the proxy; class-scoped, so it stops (and frees its connections) after the class."""
    settings = fresh_settings(pool_min=1, pool_max=3, connect_timeout=CONNECT_TIMEOUT, acquire_timeout=ACQUIRE_TIMEOUT)
    settings = settings.model_copy(update={"database_url": proxy.url_for(settings.database_url or "")})
    with ServiceProcess(settings, tmp_path_factory.mktemp("faults") / "server.log") as server:
        yield server


@pytest.mark.timeout(120)
class TestDatabaseFaults:
    """One server on a TcpProxy: pools of 3, connect_timeout 2 s, acquire_timeout 2 s."""

    @pytest.fixture(autouse=True)
    def _restore_after(self, proxy: TcpProxy) -> Iterator[None]:
        yield
        proxy.restore()

    async def _outage(
        self, server: ServiceProcess, proxy: TcpProxy, paths: list[str], *, mode: Literal["refuse", "blackhole"] = "refuse",
        workers: int = 3, down_for: float = 2.0,
    ) -> tuple[Load, list[str], dict[str, float]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await all_healthy(client)  # after the previous test's outage
        async with Load(server.url, paths, workers, timeout=OUTAGE_BOUND + 5) as load:
            await asyncio.sleep(0.7)
            cut_at = time.monotonic()
            proxy.cut(mode)
            await asyncio.sleep(down_for)
            restored_at = time.monotonic()
            proxy.restore()
            back = await load.until_all_ok(restored_at, RECOVERY + 1)
            await asyncio.sleep(0.7)
        problems = outage_problems(load, cut_at, restored_at, OUTAGE_BOUND, back)
        if problems:  # the non-200 answers, timed from the cut, to read with the failure
            problems.append(f"(restored at {restored_at - cut_at:.2f} s)")
            problems += [
                f"  {o.path} {o.started - cut_at:6.2f} -> {o.ended - cut_at:6.2f} s: {o.status} {str(o.body or o.error)[:120]}"
                for o in sorted(load.outcomes, key=lambda o: (o.path, o.started)) if o.status != 200
            ]
        return load, problems, back

    async def test_a_cut_under_load_is_a_quick_503_then_200_again(self, server: ServiceProcess, proxy: TcpProxy) -> None:
        """Every driver in its own style, plus a ``threadpool`` route, three clients each; the link is
        cut (every connection closed, new ones refused) for 2 s, then restored."""
        pid = await server_pid(server.url)
        paths = [lookup(driver) for driver in DB_DRIVERS] + [f"/bench/lookup/threadpool/psycopg3-sync?id={ITEM}"]
        _load, problems, back = await self._outage(server, proxy, paths)
        assert not problems, "\n".join(problems)
        assert await server_pid(server.url) == pid, "the service restarted"
        print("back after:", {path: round(seconds, 2) for path, seconds in back.items()})

    async def test_a_cut_on_an_async_blocking_route(self, server: ServiceProcess, proxy: TcpProxy) -> None:
        """The article's case 2 calls the driver on the event loop: the refusals must be quick, or
        the whole server would stall (a blackhole would stall it for connect_timeout per request)."""
        paths = [f"/bench/lookup/async-blocking/psycopg2?id={ITEM}"]
        _, problems, _ = await self._outage(server, proxy, paths, down_for=1.0)
        assert not problems, "\n".join(problems)

    async def test_a_blackholed_database_is_a_503_within_the_timeouts(self, server: ServiceProcess, proxy: TcpProxy) -> None:
        """Connections are closed and new ones accepted but never answered: connect attempts hang
        until connect_timeout, waiting requests until acquire_timeout; either way a 503, no hang."""
        paths = [lookup(driver) for driver in DB_DRIVERS]
        _, problems, back = await self._outage(server, proxy, paths, mode="blackhole", workers=2, down_for=4.5)
        assert not problems, "\n".join(problems)
        print("back after:", {path: round(seconds, 2) for path, seconds in back.items()})

    async def test_a_connection_lost_mid_query_is_a_503(self, server: ServiceProcess, proxy: TcpProxy) -> None:
        """The link is cut while every driver runs a pg_sleep: each request answers a 503 at once.
        (SQLAlchemy hands asyncpg's "connection was closed in the middle of operation" over as a
        bare DBAPIError, which was a 500.)"""
        async with httpx.AsyncClient(base_url=server.url, timeout=OUTAGE_BOUND + 5) as client:
            await all_healthy(client)
            paths = [own_style(driver, "pg_sleep") + "?seconds=1" for driver in SLEEPING_DRIVERS]
            requests = asyncio.gather(*(timed_get(client, path) for path in paths))
            await asyncio.sleep(0.4)
            proxy.cut()
            results = await requests
        for path, elapsed, response in results:
            assert response is not None, f"{path}: no answer"
            assert response.status_code == 503 and response.json()["error"] == "database_unavailable", (path, response.text)
            assert elapsed < 1 + MARGIN, (path, elapsed)

    async def test_connections_closed_while_idle_are_never_handed_out(self, server: ServiceProcess, proxy: TcpProxy) -> None:
        """Fill every pool (3 connections each), cut the link while nothing runs, restore it: the
        next requests must all be 200. Pools without a check hand out each dead connection once
        (psycopg2's QueuePool and psycopg_pool did: three 503s per driver; SQLAlchemy one)."""
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await all_healthy(client)  # after the previous test's outage
            fill = [own_style(driver, "pg_sleep") + "?seconds=0.3" for driver in SLEEPING_DRIVERS for _ in range(3)]
            fill += [lookup(driver) for driver in DB_DRIVERS if driver not in SLEEPING_DRIVERS]
            responses = await asyncio.gather(*(client.get(path) for path in fill))
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:1]
            pools = (await client.get("/config")).json()["pools"]
            assert {name: pools[name]["open"] for name in SLEEPING_DRIVERS} == dict.fromkeys(SLEEPING_DRIVERS, 3), pools

            proxy.cut()
            await asyncio.sleep(0.3)
            proxy.restore()

            failures = {}
            for driver in DB_DRIVERS:
                statuses = [(await client.get(lookup(driver))) for _ in range(4)]
                if any(r.status_code != 200 for r in statuses):
                    failures[driver] = [r.status_code if r.status_code == 200 else r.json() for r in statuses]
            assert not failures, failures


# --- overload -------------------------------------------------------------------------------------

OVERLOAD = 30
SLEEP = 0.5


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[str, float, httpx.Response | None]:
    started = time.monotonic()
    try:
        response: httpx.Response | None = await client.get(path)
    except httpx.HTTPError:
        response = None
    return path, time.monotonic() - started, response


@pytest.mark.timeout(90)
async def test_overload_waits_at_most_the_acquire_timeout_and_never_deadlocks(
    fresh_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """30 concurrent ``pg_sleep(0.5)`` (twice each) at once on each of three routes, pools of 3,
    acquire_timeout 1 s, 8 threadpool tokens: an ``async`` route (asyncpg), a ``sync`` route
    (psycopg2: each `def` request holds a threadpool token while it waits for a connection) and a
    ``threadpool`` route (sqlalchemy-sync in the threadpool, then sqlalchemy-async), together,
    so the two threadpool users compete for the same 8 tokens.

    A request is a 200 or a 503 ``pool_timeout``. Once it runs, each of its two steps waits at
    most acquire_timeout for a connection and then S for the query, so it ends within
    2 x (acquire_timeout + S). `def` requests may first queue for a token, which no timeout bounds;
    every one of them still finishes, and the server is responsive at once afterwards.
    """
    acquire = 1.0
    settings = fresh_settings(pool_min=1, pool_max=3, acquire_timeout=acquire, threadpool_tokens=8)
    paths = {
        "async": f"/bench/pg_sleep/async/asyncpg?seconds={SLEEP}",
        "sync": f"/bench/pg_sleep/sync/psycopg2?seconds={SLEEP}",
        "threadpool": f"/bench/pg_sleep/threadpool/sqlalchemy-sync?seconds={SLEEP}",
    }
    bound = STEPS * (acquire + SLEEP) + MARGIN
    with ServiceProcess(settings, tmp_path / "server.log") as server:
        limits = httpx.Limits(max_connections=OVERLOAD * len(paths) + 5)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            for path in paths.values():  # open a connection in each pool first
                assert (await client.get(path)).status_code == 200
            started = time.monotonic()
            results = await asyncio.gather(*(timed_get(client, path) for path in paths.values() for _ in range(OVERLOAD)))
            burst = time.monotonic() - started

            # No deadlock: the loop answers at once and every route serves a fresh request.
            _, ping_time, ping = await timed_get(client, "/ping")
            assert ping is not None and ping.status_code == 200 and ping_time < 0.5, ping_time
            after = await asyncio.gather(*(timed_get(client, path) for path in paths.values()))

    summary = {}
    for style, path in paths.items():
        mine = [(elapsed, response) for p, elapsed, response in results if p == path]
        assert all(response is not None for _, response in mine), f"{style}: a request got no answer"
        statuses = Counter(response.status_code for _, response in mine if response is not None)
        summary[style] = {"statuses": dict(statuses), "max_s": round(max(elapsed for elapsed, _ in mine), 2)}
        for _, response in mine:
            assert response is not None
            if response.status_code == 200:
                assert response.json()["result"] == SLEEP
            else:
                assert response.status_code == 503 and response.json()["error"] == "pool_timeout", response.text
        # The pool kept working through the burst, and it did run out.
        assert statuses[200] >= 3 and statuses[503] >= 1, (style, statuses)
        if style == "async":
            assert max(elapsed for elapsed, _ in mine) <= bound, (style, summary[style])
    for path, elapsed, response in after:
        assert response is not None and response.status_code == 200, (path, response and response.text)
        assert elapsed <= STEPS * SLEEP + MARGIN, (path, elapsed)
    print(f"burst of {OVERLOAD * len(paths)} requests in {burst:.1f} s:", summary)


# --- client disconnects and cancelled tasks --------------------------------------------------------


async def abandon(port: int, path: str, after: float) -> None:
    """Send a request, then close the connection after ``after`` seconds without reading the answer."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(after)
    writer.transport.abort()


async def watch_until_quiet(activity: Activity, deadline: float) -> tuple[dict[str, float], list[dict[str, Any]], float]:
    """Sample pg_stat_activity until no app backend is busy (or the deadline). Returns the time each
    application_name was last seen busy, every sample that was ``idle in transaction``, and the
    longest any pg_sleep was seen running."""
    started = time.monotonic()
    last_busy: dict[str, float] = {}
    in_transaction: list[dict[str, Any]] = []
    longest = 0.0
    while time.monotonic() < deadline:
        busy = activity.busy()
        for row in busy:
            last_busy[row["app"]] = time.monotonic() - started
            if row["state"] == "active" and "pg_sleep" in row["query"]:
                longest = max(longest, row["running_for"] or 0.0)
        in_transaction += [row for row in busy if row["state"].startswith("idle in transaction")]
        if not busy and last_busy:
            break
        await asyncio.sleep(0.1)
    return last_busy, in_transaction, longest


@pytest.mark.timeout(60)
async def test_client_disconnects_leave_no_query_running_and_no_dirty_connection(
    fresh_settings: Callable[..., Settings], activity_for: Callable[[Settings], Activity], tmp_path: Path
) -> None:
    """Two ``pg_sleep(2)`` requests per driver (and a ``threadpool`` route), each client gone after 0.2 s.

    What really happens (uvicorn 0.54 with httptools, Starlette 1.x, FastAPI): a client that
    disconnects does NOT cancel its request. uvicorn marks the request disconnected and drops
    the response it eventually sends; neither Starlette nor FastAPI cancel a non-streaming
    endpoint. So for every driver, async ones included, both steps run to completion (about
    2 x 2 s of pg_sleep), each step's connection goes back to its pool normally, and the answer
    is thrown away. (Cancellation proper, where a task is cancelled mid-query, is the next test.)

    Asserted: no pg_sleep runs longer than S (plus sampling slack), every backend is idle again
    once both steps would have finished, never an ``idle in transaction`` backend, no connection
    still checked out, and the next requests on the same pools get correct results.
    """
    seconds = 2.0
    settings = fresh_settings(pool_min=1, pool_max=3, acquire_timeout=5)
    activity = activity_for(settings)
    # Two per driver and one threadpool route (psycopg2, then asyncpg): no request waits for a connection.
    paths = [own_style(driver, "pg_sleep") + f"?seconds={seconds}" for driver in SLEEPING_DRIVERS for _ in range(2)]
    paths.append(f"/bench/pg_sleep/threadpool/psycopg2?seconds={seconds}")
    with ServiceProcess(settings, tmp_path / "server.log") as server:
        port = server.settings.port
        sent = time.monotonic()
        await asyncio.gather(*(abandon(port, path, 0.2) for path in paths))
        last_busy, in_transaction, longest = await watch_until_quiet(activity, sent + STEPS * seconds + 4 * MARGIN)
        quiet_after = time.monotonic() - sent
        assert not in_transaction, in_transaction
        assert set(last_busy) >= {f"iobench-{driver}" for driver in SLEEPING_DRIVERS}, f"the requests never ran: {last_busy}"
        assert not activity.busy(), f"still busy {quiet_after:.1f} s after the requests: {activity.busy()}"
        assert longest <= seconds + 0.5, f"a pg_sleep({seconds}) ran for {longest:.2f} s"

        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            pools = (await client.get("/config")).json()["pools"]
            for pool in pools.values():
                assert pool.get("in_use", 0) == 0 and pool.get("idle", pool["open"]) == pool["open"], pool
            for driver in DB_DRIVERS:
                response = await client.get(lookup(driver))
                assert response.status_code == 200 and response.json()["result"]["id"] == ITEM, response.text
                note = f"after disconnects via {driver}"
                response = await client.get(own_style(driver, "write"), params={"slot": 1, "note": note})
                assert response.status_code == 200 and response.json()["result"]["note"] == note, response.text
    print(f"quiet {quiet_after:.1f} s after the requests, longest pg_sleep {longest:.2f} s; last busy per driver (s):",
          {app: round(t, 1) for app, t in sorted(last_busy.items())})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ASYNC_DB_DRIVERS)
async def test_a_cancelled_query_is_stopped_and_rolled_back(
    name: str, fresh_settings: Callable[..., Settings], activity_for: Callable[[Settings], Activity]
) -> None:
    """Cancel the task of an async driver call mid-query, as a server does to a request it gives
    up on (uvicorn's shutdown after its graceful timeout, a timeout middleware, ``asyncio.timeout``).

    Observed: asyncpg sends a cancel request for the running statement and resets the connection
    before it goes back to the pool; psycopg 3 sends a cancel request and waits for the server to
    answer it, and its pool rolls back or discards a connection that comes back mid-transaction;
    SQLAlchemy's async engine closes a connection whose checkout was interrupted. Either way the
    statement stops at once (a write blocked on a row lock is rolled back while the lock is still
    held) and the pool's next connection is clean.
    """
    settings = fresh_settings(pool_min=1, pool_max=2)
    activity = activity_for(settings)
    database = open_driver(DRIVERS_BY_NAME[name], settings)
    assert is_async_database(database)
    await database.start()
    try:
        assert (await database.write(slot=3, note="before"))["note"] == "before"

        # A long pg_sleep, cancelled after 0.3 s: the server stops running it.
        task = asyncio.create_task(database.pg_sleep(30))
        await asyncio.sleep(0.3)
        assert any("pg_sleep" in row["query"] for row in activity.busy()), activity.backends()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda: not activity.busy(), 2.0, lambda: f"still busy after the cancel: {activity.busy()}")

        # A write blocked on a row lock we hold, cancelled: rolled back while our lock is still held.
        locker = await psycopg.AsyncConnection.connect(settings.database_url or "", application_name="faults-locker")
        async with locker, locker.transaction():
            await locker.execute("SELECT 1 FROM writes WHERE slot = 3 FOR UPDATE")
            write = asyncio.create_task(database.write(slot=3, note="cancelled"))
            await _until(
                lambda: any(row["wait_event_type"] == "Lock" for row in activity.busy()), 3.0,
                lambda: f"the write never waited for the lock: {activity.backends()}",
            )
            write.cancel()
            with pytest.raises(asyncio.CancelledError):
                await write
            await _until(lambda: not activity.busy(), 2.0, lambda: f"left behind by the cancel: {activity.busy()}")
        async with await psycopg.AsyncConnection.connect(settings.database_url or "") as reader:
            note = await (await reader.execute("SELECT note FROM writes WHERE slot = 3")).fetchone()
        assert note == ("before",), note

        # The pool's connections are clean: reads, a write on the same row, no transaction left open.
        row = await database.lookup(ITEM)
        assert row is not None and row["id"] == ITEM
        assert (await database.write(slot=3, note="after"))["note"] == "after"
        assert await database.pg_sleep(0.01) == 0.01
        assert not activity.busy(), activity.busy()
    finally:
        await database.stop()


async def _until(condition: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message()
        await asyncio.sleep(0.05)


# --- connection accounting --------------------------------------------------------------------------

needs_ab = pytest.mark.skipif(shutil.which("ab") is None, reason="ApacheBench (ab) not installed")


class PeakConnections:
    """Samples the app's connection count in a thread while a run goes on; ``peak`` is the highest."""

    def __init__(self, activity: Activity, every: float = 0.2) -> None:
        self.activity = activity
        self.every = every
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.activity.count())
            self.samples += 1

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@needs_ab
@pytest.mark.timeout(120)
async def test_connection_accounting_after_10000_mixed_requests(
    fresh_settings: Callable[..., Settings], activity_for: Callable[[Settings], Activity], tmp_path: Path
) -> None:
    """About 10,000 requests over every pooled driver: lookups, reports, writes, 404s, 422s, statement
    timeouts (pg_sleep past a 250 ms statement_timeout) and abandoned requests. Meanwhile and
    afterwards the app's connections in pg_stat_activity never exceed the sum of the pools'
    maxima; after the server stops they drop to zero within a few seconds."""
    from loadtests.ab import run_ab

    settings = fresh_settings(pool_min=1, pool_max=4, acquire_timeout=3, statement_timeout_ms=250, threadpool_tokens=16)
    pool_max_total = sum(settings.pool_size(driver).max for driver in DB_DRIVERS)
    activity = activity_for(settings)
    missing = settings.seed_rows + 1000
    # (path, requests, concurrency, expected status): ab for the bulk.
    bulk: list[tuple[str, int, int, int]] = [(lookup(driver), 500, 2, 200) for driver in DB_DRIVERS] + [
        ("/bench/report/threadpool/psycopg2?category=1", 300, 1, 200),
        ("/bench/write/sync/sqlalchemy-sync?slot=3&note=accounting", 300, 1, 200),
        ("/bench/write/async/psycopg3-async?slot=4&note=accounting", 300, 1, 200),
        ("/bench/pg_sleep/threadpool/psycopg3-sync?seconds=0.001", 300, 1, 200),
        (f"/bench/lookup/async/asyncpg?id={missing}", 500, 1, 404),
        (f"/bench/lookup/sync/psycopg2?id={missing}", 500, 1, 404),
        ("/bench/lookup/async/sqlalchemy-async?id=-1", 600, 1, 422),
        ("/bench/pg_sleep/sync/psycopg3-sync?seconds=-1", 600, 1, 422),
    ]
    timeouts_per_driver, abandoned_per_driver = 40, 110
    total = sum(n for _, n, _, _ in bulk) + len(SLEEPING_DRIVERS) * (timeouts_per_driver + abandoned_per_driver)
    assert total >= 10_000

    with ServiceProcess(settings, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            for path, _, _, status in bulk:  # each path answers what ab will count it as
                assert (await client.get(path)).status_code == status, path

            async def statement_timeouts(driver: str) -> list[httpx.Response]:
                path = own_style(driver, "pg_sleep") + "?seconds=0.5"
                return [await client.get(path) for _ in range(timeouts_per_driver)]

            async def abandoned(driver: str) -> None:
                # Gone after 30 ms of a 2 x 0.1 s request; paced so the work left behind never fills the pool.
                path = own_style(driver, "pg_sleep") + "?seconds=0.1"
                for _ in range(abandoned_per_driver):
                    await abandon(server.settings.port, path, 0.03)
                    await asyncio.sleep(0.17)

            started = time.monotonic()
            with PeakConnections(activity) as peak:
                ab_runs = asyncio.gather(*(asyncio.to_thread(run_ab, server.url + path, n, c, keepalive=True, timeout_s=10)
                                           for path, n, c, _ in bulk))
                timed_out = asyncio.gather(*(statement_timeouts(driver) for driver in SLEEPING_DRIVERS))
                gone = asyncio.gather(*(abandoned(driver) for driver in SLEEPING_DRIVERS))
                ab_results, timeout_responses, _ = await asyncio.gather(ab_runs, timed_out, gone)
                await asyncio.sleep(0.5)  # the last abandoned requests finish on the server
                after_run = activity.count()
            took = time.monotonic() - started

        for (path, n, _, status), result in zip(bulk, ab_results, strict=True):
            assert result.complete == n, (path, result)
            assert result.failed_connect == result.failed_receive == result.failed_exceptions == 0, (path, result)
            assert result.non_2xx == (0 if status == 200 else n), (path, result)
        for responses in timeout_responses:
            for response in responses:
                assert response.status_code == 503 and response.json()["error"] == "statement_timeout", response.text
        assert peak.samples > 10
        assert peak.peak <= pool_max_total, f"{peak.peak} connections at peak, pools allow {pool_max_total}"
        assert after_run <= pool_max_total, (after_run, pool_max_total)
        assert not activity.busy(), activity.busy()

    stopped = time.monotonic()
    await _until(lambda: activity.count() == 0, 5.0, lambda: f"still connected after shutdown: {activity.backends()}")
    print(f"{total} requests in {took:.1f} s; peak {peak.peak} connections (pools allow {pool_max_total}),"
          f" {after_run} after the run, 0 after {time.monotonic() - stopped:.1f} s from shutdown")
