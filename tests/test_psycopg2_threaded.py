"""psycopg2's own ThreadedConnectionPool, as ``psycopg2-threaded`` runs it (db/drivers/psycopg2.py).

What iobench changes from psycopg2's defaults, each checked on the real Postgres: every connection
it opens is kept (no connect per request), a request waits ``acquire_timeout`` for a free
connection and then gets a 503 ``pool_timeout`` (psycopg2 raises ``PoolError`` at once), a
connection the server closed is replaced at checkout, and one returned unclean is closed. The
catalogue side (same statements as ``psycopg2``, its main style only) is in test_catalogue.py and
test_round_trips.py; lookups, writes and outages through it in test_drivers.py, test_unavailable.py
and test_faults.py, which run every pooled driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from app.catalogue import DRIVERS_BY_NAME, LOOKUP, WRITE, Style
from app.settings import Settings
from db.drivers.base import PoolSize
from db.drivers.psycopg2 import ThreadedPsycopg2Database
from db.errors import DatabaseUnavailable

pytestmark = pytest.mark.postgres  # every test here runs against the session's test database

#: Its own application_name, so pg_stat_activity sees this test's connections only.
NAME = "psycopg2-threaded-test"
MAX = 3
ACQUIRE_TIMEOUT = 0.3


def test_the_catalogue_serves_it_beside_psycopg2_in_its_main_style() -> None:
    driver = DRIVERS_BY_NAME["psycopg2-threaded"]
    assert driver.alternative_to == "psycopg2" and driver.defaults_of is None
    assert driver.factory == "db.drivers.psycopg2:ThreadedPsycopg2Database"
    assert driver.workloads == (LOOKUP, WRITE) and driver.styles == (Style.SYNC,)


def make(settings: Settings, **overrides: object) -> ThreadedPsycopg2Database:
    narrow = settings.model_copy(update={"pools": {NAME: PoolSize(min=1, max=MAX)}, "acquire_timeout": ACQUIRE_TIMEOUT,
                                         **overrides})
    return ThreadedPsycopg2Database(narrow.connection(NAME))


@pytest.fixture
async def driver(settings: Settings) -> AsyncIterator[ThreadedPsycopg2Database]:
    instance = make(settings)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture
def backends(settings: Settings) -> Callable[[], set[int]]:
    """The pids of the server backends this test's pool holds."""
    def pids() -> set[int]:
        with psycopg.connect(settings.url, autocommit=True) as connection:
            rows = connection.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                      [f"iobench-{NAME}"]).fetchall()
        return {row[0] for row in rows}

    return pids


def in_use(driver: ThreadedPsycopg2Database) -> tuple[int, int]:
    info = driver.pool_info()
    return info["open"], info["in_use"]


async def test_it_opens_its_minimum_at_start_and_says_so(driver: ThreadedPsycopg2Database,
                                                          backends: Callable[[], set[int]]) -> None:
    info = driver.pool_info()
    assert info["kind"] == "psycopg2.pool.ThreadedConnectionPool" and info["configuration"] == "equal work"
    assert (info["min"], info["max"], info["open"], info["in_use"]) == (1, MAX, 1, 0)
    assert len(backends()) == 1


async def test_it_keeps_every_connection_it_opens(driver: ThreadedPsycopg2Database, backends: Callable[[], set[int]]) -> None:
    """psycopg2 would close each connection returned above minconn: a connect per request under load."""
    def burst() -> None:
        with ThreadPoolExecutor(2 * MAX) as threads:
            assert all(row is not None for row in threads.map(driver.lookup, [7] * 120))

    burst()
    first = backends()
    burst()
    assert backends() == first and 1 <= len(first) <= MAX
    assert in_use(driver) == (len(first), 0)


async def test_an_exhausted_pool_waits_then_answers_pool_timeout(driver: ThreadedPsycopg2Database) -> None:
    holding = [threading.Thread(target=driver.pg_sleep, args=(1.0,)) for _ in range(MAX)]
    for thread in holding:
        thread.start()
    try:
        time.sleep(0.2)  # every connection taken
        assert in_use(driver)[1] == MAX
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as refused:
            driver.lookup(7)
        waited = time.monotonic() - started
    finally:
        for thread in holding:
            thread.join(10)
    assert refused.value.reason == "pool_timeout" and refused.value.driver == NAME, refused.value
    assert ACQUIRE_TIMEOUT <= waited < ACQUIRE_TIMEOUT + 0.5, waited
    assert driver.lookup(7) is not None  # freed: served again
    assert in_use(driver) == (MAX, 0)


async def test_a_request_waiting_less_than_the_timeout_gets_the_freed_connection(settings: Settings) -> None:
    patient = make(settings, acquire_timeout=3.0)
    await patient.start()
    try:
        holding = [threading.Thread(target=patient.pg_sleep, args=(0.5,)) for _ in range(MAX)]
        for thread in holding:
            thread.start()
        time.sleep(0.1)
        assert patient.lookup(7) is not None
        for thread in holding:
            thread.join(10)
    finally:
        await patient.stop()


async def test_connections_the_server_closed_are_replaced_at_checkout(
    driver: ThreadedPsycopg2Database, backends: Callable[[], set[int]], settings: Settings
) -> None:
    with ThreadPoolExecutor(MAX) as threads:  # every connection open and idle
        list(threads.map(driver.pg_sleep, [0.1] * MAX))
    killed = backends()
    assert len(killed) == MAX
    with psycopg.connect(settings.url, autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(killed)])
    deadline = time.monotonic() + 5
    while backends() and time.monotonic() < deadline:  # the server's goodbye reaches the sockets
        time.sleep(0.05)
    for _ in range(2 * MAX):
        assert driver.lookup(7) is not None  # never a dead connection, so never a 503
    assert not backends() & killed
    assert in_use(driver) == (len(backends()), 0)


async def test_an_unclean_connection_is_closed_not_pooled(driver: ThreadedPsycopg2Database) -> None:
    with driver._connection() as connection:  # what a route never does: leave a transaction open
        connection.cursor().execute("BEGIN")
    assert connection.closed
    assert in_use(driver) == (0, 0)
    assert driver.lookup(7) is not None
    assert in_use(driver) == (1, 0)


async def test_connects_to_a_silent_database_run_side_by_side(settings: Settings) -> None:
    """psycopg2 connects under the pool's lock: with a database that accepts and never answers,
    MAX requests would wait one connect_timeout after another. Here each waits its own."""
    url = make_url(settings.url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        silent = make(settings, database_url=proxy.url_for(settings.url), connect_timeout=2, acquire_timeout=10.0)
        proxy.cut("blackhole")
        await silent.start()  # its minimum cannot open: no error, as for a database that is down
        try:
            def timed_lookup(_: int) -> tuple[str, float]:
                started = time.monotonic()
                try:
                    silent.lookup(7)
                except DatabaseUnavailable as exc:
                    return exc.reason, time.monotonic() - started
                return "served", time.monotonic() - started

            with ThreadPoolExecutor(MAX) as threads:
                outcomes = list(threads.map(timed_lookup, range(MAX)))
        finally:
            await silent.stop()
    assert [reason for reason, _ in outcomes] == ["database_unavailable"] * MAX, outcomes
    assert max(elapsed for _, elapsed in outcomes) < 2 + 1.5, outcomes  # one connect_timeout each, not MAX in a row


async def test_it_starts_without_its_database_and_answers_503(settings: Settings) -> None:
    down = make(settings, database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    await down.start()
    try:
        assert in_use(down) == (0, 0)
        with pytest.raises(DatabaseUnavailable) as refused:
            down.lookup(7)
        assert refused.value.reason == "database_unavailable"
        assert in_use(down) == (0, 0)
    finally:
        await down.stop()
