"""Each Postgres driver's round trips per operation, counted on the wire by the wire proxy.

The drivers are the app's own classes (``app.catalogue.DRIVERS``, ``db/drivers/``), built from
settings whose database URL points at a ``ProxyProcess`` (no added delay), with a pool of one
connection so that every call meets the same, warm connection. Each operation is run until the
statement caches are warm (asyncpg prepares on the first run, psycopg 3 on the sixth), then
counted over ``RUNS`` more runs. A round trip is a Query, Sync or Flush message: after each,
the client waits for the server (``db.wire_proxy.counters``).

Pinned: what the catalogue documents for each driver (``Driver.setup``, app/catalogue.py): one
round trip per statement it lists for a read and for the write. In the equal-work configuration
a read is 1 and the write 3 (BEGIN, upsert, COMMIT), except SQLAlchemy's sync engine, whose write
is 4 (psycopg2's SET default_transaction_isolation on leaving autocommit); the ``-defaults``
entries add the drivers' own BEGIN/ROLLBACK or reset query; an ``alternative_to`` entry (the
same driver on another pool) sends exactly what its driver sends. When a driver's configuration
changes on purpose, change its ``Setup`` in the catalogue and say why there.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.catalogue import DATABASE_WORKLOADS, DRIVERS, Driver
from app.registry import open_driver
from app.settings import Settings
from db.drivers.base import PoolSize
from db.wire_proxy import ProxyProcess, WireCounters

WARM_UP = 8  # past psycopg 3's prepare_threshold (5): its 6th run prepares the statement
RUNS = 10

#: The arguments each operation is called with (ids and slots every test database has).
ARGUMENTS: dict[str, tuple[Any, ...]] = {
    "pg_sleep": (0.0,),
    "lookup": (7,),
    "report": (2,),
    "write": (3, "round trips"),
}


@dataclass(frozen=True)
class WireWork:
    """What one call of each operation puts on the wire once the connection is warm."""

    pg_sleep: int
    lookup: int
    report: int
    write: int
    parses: int = 0  # Parse messages per call: 0 once every statement is prepared and cached

    def round_trips(self) -> dict[str, int]:
        return {operation: getattr(self, operation) for operation in ARGUMENTS}


DATABASE_DRIVERS = [driver for driver in DRIVERS if driver.pooled]


def documented(driver: Driver) -> WireWork:
    """Round trips per operation as the catalogue documents them (a ``-defaults`` entry's class
    serves every operation, so its read statements stand for pg_sleep and report too)."""
    assert driver.setup is not None, f"{driver.name} documents no setup"
    counts = {workload.operation: len(driver.setup.statements(workload)) for workload in DATABASE_WORKLOADS}
    return WireWork(**counts)


EXPECTED: dict[str, WireWork] = {driver.name: documented(driver) for driver in DATABASE_DRIVERS}


def test_every_database_driver_and_operation_is_pinned() -> None:
    assert {driver.name for driver in DATABASE_DRIVERS} == set(EXPECTED)
    assert {workload.operation for workload in DATABASE_WORKLOADS} == set(ARGUMENTS)


def test_a_driver_on_another_pool_sends_what_its_driver_sends() -> None:
    """Equal work: an ``alternative_to`` entry (psycopg2 on ThreadedConnectionPool) is pinned to its
    driver's round trips, so a gap between the two in a run is the pool's alone."""
    alternatives = [driver for driver in DATABASE_DRIVERS if driver.alternative_to]
    assert alternatives
    for driver in alternatives:
        assert EXPECTED[driver.name] == EXPECTED[driver.alternative_to or ""], driver.name


@pytest.fixture(scope="module")
def proxy(settings: Settings) -> Iterator[ProxyProcess]:
    assert settings.database_url is not None
    with ProxyProcess(settings.database_url, 0.0) as proxy:
        yield proxy


async def call(driver: Any, operation: str) -> None:
    result = getattr(driver, operation)(*ARGUMENTS[operation])
    if inspect.isawaitable(result):
        await result


async def measure(driver: Any, operation: str, proxy: ProxyProcess) -> WireCounters:
    for _ in range(WARM_UP):
        await call(driver, operation)
    proxy.reset()
    for _ in range(RUNS):
        await call(driver, operation)
    return proxy.reset()


@pytest.mark.parametrize("spec", DATABASE_DRIVERS, ids=lambda driver: driver.name)
@pytest.mark.postgres
async def test_round_trips_per_operation(spec: Driver, settings: Settings, proxy: ProxyProcess) -> None:
    one_connection = settings.model_copy(update={"database_url": proxy.url, "pools": {spec.name: PoolSize(min=1, max=1)}})
    driver = open_driver(spec, one_connection)
    await driver.start()
    try:
        counted = {operation: await measure(driver, operation, proxy) for operation in ARGUMENTS}
    finally:
        await driver.stop()
    expected = EXPECTED[spec.name]
    per_call = {operation: counters.round_trips / RUNS for operation, counters in counted.items()}
    messages = {operation: counters.messages for operation, counters in counted.items()}
    assert per_call == expected.round_trips(), f"{spec.name}: frontend messages over {RUNS} calls: {messages}"
    assert {operation: counters.parses / RUNS for operation, counters in counted.items()} == dict.fromkeys(ARGUMENTS, expected.parses), messages
    assert all(counters.sessions == 0 for counters in counted.values()), f"{spec.name} opened connections while warm"
