"""The work each Postgres driver puts on the server, from the server's own counters (db/server_stats.py).

For every pooled driver of the catalogue and every operation it serves, the server transactions
one operation ends (``pg_stat_database``) equal what the catalogue documents for it
(``Driver.setup``): one per read and one per write in the equal-work configuration (two per write
for SQLAlchemy's sync engine, whose psycopg2 sends a SET in a transaction of its own), and the
``-defaults`` entries' own BEGIN/ROLLBACK (a rollback per read) or reset query (one more commit).

How: a pool of one connection runs the operation once (the connection opens, statements get
prepared), or once plus ``RUNS`` more times, and is closed, which makes its backend exit and push
its counters; the difference between the two, over ``RUNS``, is the steady-state work of one
operation. Another session on the database (an autovacuum worker) can only add to a count, so a
mismatch is measured again before it fails.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.catalogue import DRIVERS, Driver, Transactions, Workload
from app.prepare import prepare
from app.registry import open_driver
from app.settings import Settings
from db.drivers.base import PoolSize
from db.server_stats import ServerStats, ServerWork, backend_cpu_seconds, work_between

RUNS = 4
ATTEMPTS = 3
REPORTS = 300  # report queries on the small test data: enough CPU for a 10 ms clock tick
#: Arguments of each operation (an id, a category and a slot every test database has).
ARGUMENTS: dict[str, dict[str, Any]] = {
    "pg_sleep": {"seconds": 0.0},
    "lookup": {"item_id": 7},
    "report": {"category": 2},
    "write": {"slot": 5, "note": "server work"},
}
CASES = [(driver, workload) for driver in DRIVERS if driver.pooled for workload in driver.workloads]


@pytest.fixture(scope="module")
def measured(settings: Settings, empty_database_factory: Callable[[], str]) -> Iterator[tuple[Settings, ServerStats]]:
    """Settings on a database of its own (nothing else connects to it) and a ServerStats on it."""
    url = empty_database_factory()
    prepare(url, settings)
    own = settings.model_copy(update={"database_url": url})
    with ServerStats(url, application="iobench-%") as stats:
        yield own, stats


async def _run(driver: Driver, workload: Workload, times: int, settings: Settings, stats: ServerStats) -> ServerWork:
    """One pool of one connection: ``times`` operations, then closed; the server's work meanwhile."""
    one = settings.model_copy(update={"pools": {driver.name: PoolSize(min=1, max=1)}})
    instance = open_driver(driver, one)
    before = stats.settled()
    await instance.start()
    try:
        for _ in range(times):
            result = getattr(instance, workload.operation)(**ARGUMENTS[workload.operation])
            if inspect.isawaitable(result):
                await result
        during = stats.snapshot()
    finally:
        await instance.stop()
    assert stats.wait_until_no_backends(), f"{driver.name}: backends still connected after stop()"
    return work_between(before, stats.settled(), cpu_until=during)


async def per_operation(driver: Driver, workload: Workload, settings: Settings, stats: ServerStats) -> tuple[Transactions, int]:
    """Server transactions and new sessions of one warm operation."""
    once = await _run(driver, workload, 1, settings, stats)
    more = await _run(driver, workload, 1 + RUNS, settings, stats)
    commits, rollbacks = more.commits - once.commits, more.rollbacks - once.rollbacks
    assert commits % RUNS == 0 and rollbacks % RUNS == 0, f"{driver.name} {workload.name}: {commits} commits, {rollbacks} rollbacks over {RUNS}"
    return Transactions(commits // RUNS, rollbacks // RUNS), more.sessions - once.sessions


@pytest.mark.parametrize(("driver", "workload"), CASES, ids=[f"{d.name}-{w.name}" for d, w in CASES])
@pytest.mark.postgres
async def test_server_transactions_per_operation_are_the_documented_ones(
    driver: Driver, workload: Workload, measured: tuple[Settings, ServerStats]
) -> None:
    settings, stats = measured
    assert driver.setup is not None
    expected = driver.setup.transactions(workload)
    for _ in range(ATTEMPTS):
        try:
            counted, sessions = await per_operation(driver, workload, settings, stats)
        except AssertionError:
            continue  # a count that does not divide: another session's transactions landed in one run
        if counted == expected and sessions == 0:
            break
    assert (counted, sessions) == (expected, 0), (
        f"{driver.name} {workload.name}: {driver.setup.statements(workload)} should end {expected}")


@pytest.mark.postgres
async def test_backend_cpu_is_counted(measured: tuple[Settings, ServerStats]) -> None:
    """A report query costs the server real CPU, and the snapshot sees it (Postgres on this machine)."""
    settings, stats = measured
    before = stats.snapshot()
    if before.cpu is None:
        pytest.skip("Postgres does not run on this machine: its /proc is not ours to read")
    driver = next(d for d in DRIVERS if d.name == "psycopg2")
    work = await _run(driver, next(w for w in driver.workloads if w.name == "report"), REPORTS, settings, stats)
    assert work.backends == 1 and work.backends_gone == 0, work
    assert work.cpu_s is not None and work.cpu_s > 0, work
    assert work.per(REPORTS).cpu_ms is not None


def test_proc_stat_is_parsed_after_the_last_parenthesis(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process name may hold spaces and parentheses; only a process named postgres counts."""
    import db.server_stats as server_stats

    ticks = server_stats._CLOCK_TICKS
    fields = ["S"] + ["0"] * 10 + [str(3 * ticks), str(ticks)] + ["0"] * 30
    (tmp_path / "41").mkdir()
    (tmp_path / "41" / "stat").write_text(f"41 (postgres) {' '.join(fields)}\n")
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text(f"42 (not (a) postgres) {' '.join(fields)}\n")
    monkeypatch.setattr(server_stats, "_PROC", tmp_path)
    monkeypatch.setattr(server_stats, "CPU_CLOCK", "ticks")
    assert backend_cpu_seconds(41) == 4.0
    assert backend_cpu_seconds(42) is None
    assert backend_cpu_seconds(43) is None


def test_schedstat_gives_nanoseconds_where_the_kernel_keeps_it(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ticks charge 10 ms to whoever runs at the interrupt; schedstat counts each backend's own ns."""
    import db.server_stats as server_stats

    fields = ["S"] + ["0"] * 10 + ["0", "0"] + ["0"] * 30
    for pid, name in ((41, "postgres"), (42, "python3")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")
        (tmp_path / str(pid) / "schedstat").write_text("1234567 89 3\n")
    monkeypatch.setattr(server_stats, "_PROC", tmp_path)
    monkeypatch.setattr(server_stats, "CPU_CLOCK", "schedstat")
    assert backend_cpu_seconds(41) == pytest.approx(0.001234567)  # 0 ticks in stat, 1.2 ms on a CPU
    assert backend_cpu_seconds(42) is None  # not a Postgres
