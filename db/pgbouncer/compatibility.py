"""Which drivers work through PgBouncer in transaction pooling: measured, not assumed.

For each driver, its four operations run ``calls`` times in each of ``concurrency`` tasks at
once, through a PgBouncer of ``pool_size`` server connections (fewer than the driver's pool, and
handed out in turn), first with the driver's own prepared-statement behaviour, then with the
setting its documentation gives for PgBouncer (``ConnectionConfig.prepared_statements=False``).
So a client connection meets several server connections and every statement runs more than six
times on each client connection (psycopg 3 prepares from the sixth). Each result is checked
against the same query run directly, so a statement that ran under another's name is caught too.

    table = measure_compatibility(database_url, {"asyncpg": AsyncpgDatabase, ...}, driver_defaults={"asyncpg-defaults"})
    table.markdown()          # driver | out of the box | error | setting needed | with it
    table.to_dict()           # the same as JSON for run.json

The database must be prepared by ``iobench prepare`` (its ``items``, ``customers`` and ``writes``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from psycopg.rows import dict_row

from db import queries
from db.drivers.base import AsyncDatabase, ConnectionConfig, PoolSize, SyncDatabase
from db.errors import DatabaseUnavailable
from db.pgbouncer.process import PgBouncerProcess, pgbouncer_version

Database = SyncDatabase | AsyncDatabase
DatabaseFactory = Callable[[ConnectionConfig], Database]

OPERATIONS = ("pg_sleep", "lookup", "report", "write")
#: Slots of the ``writes`` table the check upserts (the write route's own range starts at 0).
WRITE_SLOTS = 10
#: Longest a single call may take before it counts as a hang.
CALL_TIMEOUT = 30.0


@dataclass(frozen=True)
class OperationResult:
    """One operation's calls in one configuration."""

    operation: str
    calls: int
    failed: int
    wrong: int  # answered without an error, with rows that are not this query's
    first_error: str | None  # "DatabaseUnavailable(prepared_statement): ..." or "ExceptionType: ..." (a 500 in the service)
    answer: str | None  # what the service answers the first failure with: "503 <reason>" or "500"
    seconds: float
    first_wrong: str | None = None  # the first wrong answer: "report(3) -> [...]"

    @property
    def works(self) -> bool:
        return self.failed == 0 and self.wrong == 0


@dataclass(frozen=True)
class Trial:
    """One driver in one configuration: ``prepared_statements`` as the driver has it, or off."""

    prepared_statements: bool
    setting: str  # what the driver was given, in its own words
    operations: tuple[OperationResult, ...] = ()
    start_error: str | None = None

    @property
    def works(self) -> bool:
        return self.start_error is None and all(result.works for result in self.operations)

    @property
    def first_error(self) -> str | None:
        if self.start_error is not None:
            return self.start_error
        for result in self.operations:
            if result.first_error is not None:
                return f"{result.operation}: {result.first_error}"
            if result.wrong:
                return f"{result.operation}: {result.wrong} of {result.calls} answers were another statement's rows"
        return None

    @property
    def answer(self) -> str | None:
        return next((result.answer for result in self.operations if result.answer is not None), None)

    @property
    def calls(self) -> int:
        return sum(result.calls for result in self.operations)

    @property
    def failed(self) -> int:
        return sum(result.failed for result in self.operations)

    @property
    def wrong(self) -> int:
        """Calls answered without an error but with another statement's rows: a 200 with wrong data."""
        return sum(result.wrong for result in self.operations)


@dataclass(frozen=True)
class DriverCompatibility:
    """One driver through PgBouncer: out of the box, and with its PgBouncer setting."""

    driver: str
    out_of_the_box: Trial
    with_setting: Trial
    pgbouncer_setting: str | None  # the driver's PgBouncer setting, None when it never prepares on the server

    @property
    def works_out_of_the_box(self) -> bool:
        return self.out_of_the_box.works

    @property
    def setting_needed(self) -> str | None:
        """What to set for PgBouncer: None when the defaults work."""
        if self.works_out_of_the_box:
            return None
        return self.pgbouncer_setting or "(no setting known)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "works_out_of_the_box": self.works_out_of_the_box,
            "calls": self.out_of_the_box.calls,
            "failed": self.out_of_the_box.failed,
            "wrong": self.out_of_the_box.wrong,
            "error": self.out_of_the_box.first_error,
            "answer": self.out_of_the_box.answer,
            "setting_needed": self.setting_needed,
            "works_with_setting": self.with_setting.works,
            "error_with_setting": self.with_setting.first_error,
            "trials": [asdict(self.out_of_the_box), asdict(self.with_setting)],
        }


@dataclass(frozen=True)
class CompatibilityTable:
    """Every driver measured, and how: PgBouncer's version and pooling, the calls made."""

    pgbouncer: str
    pool_mode: str
    pool_size: int
    concurrency: int
    calls: int
    drivers: tuple[DriverCompatibility, ...] = field(default_factory=tuple)

    def by_driver(self) -> dict[str, DriverCompatibility]:
        return {entry.driver: entry for entry in self.drivers}

    def to_dict(self) -> dict[str, Any]:
        return {"pgbouncer": self.pgbouncer, "pool_mode": self.pool_mode, "pool_size": self.pool_size,
                "concurrency": self.concurrency, "calls": self.calls, "drivers": [entry.to_dict() for entry in self.drivers]}

    def markdown(self) -> str:
        """One row a driver: out of the box (failed and wrong answers of all calls, the first error
        and the service's answer to it), the setting it needs, and how it does with it."""
        lines = ["| driver | out of the box | failed | wrong answers | first error (service answer) | setting needed | with it |",
                 "|---|---|---|---|---|---|---|"]
        for entry in self.drivers:
            trial = entry.out_of_the_box
            error = trial.first_error or ""
            if trial.answer:
                error = f"{error} ({trial.answer})"
            with_it = "works" if entry.with_setting.works else f"fails: {entry.with_setting.first_error}"
            cells = [entry.driver, "works" if entry.works_out_of_the_box else "fails", f"{trial.failed} of {trial.calls}",
                     f"{trial.wrong} of {trial.calls}", error, entry.setting_needed or "none", with_it]
            lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
        return "\n".join(lines)


# --- what a right answer is ---------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The operations' arguments and what each must return, read straight from the database."""

    items: dict[int, dict[str, Any] | None]
    reports: dict[int, list[dict[str, Any]]]

    @classmethod
    def read(cls, database_url: str, count: int) -> Expected:
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row, prepare_threshold=None) as connection:
            items = {item_id: connection.execute(queries.LOOKUP.pyformat, {"item_id": item_id}).fetchone()
                     for item_id in range(1, count + 1)}
            categories = [row["category"] for row in connection.execute("SELECT DISTINCT category FROM items ORDER BY 1").fetchall()]
            reports = {category: connection.execute(queries.REPORT.pyformat, {"category": category}).fetchall()
                       for category in categories[:count]}
        return cls(items, reports)

    def call(self, operation: str, index: int, note: str) -> tuple[tuple[Any, ...], Callable[[Any], bool]]:
        """The arguments of call ``index`` of ``operation`` and a check of its answer."""
        if operation == "pg_sleep":
            return (0.0,), lambda answer: True  # the driver returns its argument: nothing to check
        if operation == "lookup":
            item_id = 1 + index % len(self.items)
            return (item_id,), lambda answer: _same(answer, self.items[item_id])
        if operation == "report":
            category = list(self.reports)[index % len(self.reports)]
            return (category,), lambda answer: _same(answer, self.reports[category])
        slot = index % WRITE_SLOTS
        return (slot, note), lambda answer: answer is not None and answer["slot"] == slot and answer["note"] == note


def _same(answer: Any, expected: Any) -> bool:
    """Equal rows, whichever driver read them (datetimes compared as instants)."""
    if isinstance(answer, list) and isinstance(expected, list):
        return len(answer) == len(expected) and all(_same(a, e) for a, e in zip(answer, expected, strict=True))
    if isinstance(answer, Mapping) and isinstance(expected, Mapping):
        return set(answer) == set(expected) and all(answer[key] == expected[key] for key in expected)
    return bool(answer == expected)


# --- running one trial ----------------------------------------------------------------------------


def describe_error(exc: BaseException) -> tuple[str, str]:
    """The error in one line, and what the service answers it with."""
    if isinstance(exc, DatabaseUnavailable):
        return f"DatabaseUnavailable({exc.reason}): {exc.detail}", f"503 {exc.reason}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, TimeoutError):
        return f"no answer within {CALL_TIMEOUT:g} s (a hang)", "none (a hang)"
    return f"{type(exc).__name__}: {text}", "500"


async def _call(database: Database, operation: str, args: tuple[Any, ...]) -> Any:
    method = getattr(database, operation)
    with anyio.fail_after(CALL_TIMEOUT):
        if database.kind == "sync":
            return await anyio.to_thread.run_sync(method, *args, abandon_on_cancel=True)
        return await method(*args)


async def _run_operation(database: Database, operation: str, expected: Expected, calls: int, concurrency: int,
                         note: str) -> OperationResult:
    failed = wrong = 0
    first: tuple[str, str] | None = None
    first_wrong: str | None = None
    started = time.monotonic()

    async def task(offset: int) -> None:
        nonlocal failed, wrong, first, first_wrong
        for i in range(calls):
            args, check = expected.call(operation, offset + i * concurrency, note)
            try:
                answer = await _call(database, operation, args)
            except Exception as exc:
                failed += 1
                first = first or describe_error(exc)
                continue
            if not check(answer):
                wrong += 1
                first_wrong = first_wrong or f"{operation}{args!r} -> {answer!r}"[:300]

    async with anyio.create_task_group() as group:
        for offset in range(concurrency):
            group.start_soon(task, offset)
    error, answer = first or (None, None)
    return OperationResult(operation, calls * concurrency, failed, wrong, error, answer, round(time.monotonic() - started, 3),
                           first_wrong)


async def run_trial(factory: DatabaseFactory, config: ConnectionConfig, expected: Expected, *, calls: int, concurrency: int,
                    operations: Sequence[str] = OPERATIONS) -> Trial:
    """Start the driver with ``config``, run every operation, stop it."""
    database = factory(config)
    setting = _setting_words(database, config)
    try:
        with anyio.fail_after(CALL_TIMEOUT):
            await database.start()
    except Exception as exc:
        return Trial(config.prepared_statements, setting, start_error=describe_error(exc)[0])
    try:
        results = [await _run_operation(database, operation, expected, calls, concurrency, f"pgbouncer check {config.driver}")
                   for operation in operations]
    finally:
        with anyio.move_on_after(CALL_TIMEOUT):
            await database.stop()
    return Trial(config.prepared_statements, setting, tuple(results))


def _setting_words(database: Database, config: ConnectionConfig) -> str:
    pgbouncer_setting: str | None = getattr(database, "pgbouncer_setting", None)
    if config.prepared_statements or pgbouncer_setting is None:
        return "driver default"
    return pgbouncer_setting


def connection_config(driver: str, url: str, *, concurrency: int, statement_timeout_ms: int, prepared_statements: bool,
                      driver_defaults: bool = False) -> ConnectionConfig:
    """What each trial gives a driver: a pool as large as the concurrency, opened at once."""
    return ConnectionConfig(driver=driver, url=url, pool=PoolSize(min=concurrency, max=concurrency), acquire_timeout=10.0,
                            connect_timeout=5, statement_timeout_ms=statement_timeout_ms, driver_defaults=driver_defaults,
                            prepared_statements=prepared_statements)


async def check_driver(pooled_url: str, expected: Expected, name: str, factory: DatabaseFactory, *, calls: int = 12,
                       concurrency: int = 4, statement_timeout_ms: int = 15_000, driver_defaults: bool = False,
                       operations: Sequence[str] = OPERATIONS) -> DriverCompatibility:
    """One driver through the PgBouncer at ``pooled_url``: out of the box, then with its setting."""
    trials = []
    for prepared in (True, False):
        config = connection_config(name, pooled_url, concurrency=concurrency, statement_timeout_ms=statement_timeout_ms,
                                   prepared_statements=prepared, driver_defaults=driver_defaults)
        trials.append(await run_trial(factory, config, expected, calls=calls, concurrency=concurrency, operations=operations))
    return DriverCompatibility(name, trials[0], trials[1], getattr(factory, "pgbouncer_setting", None))


def measure_compatibility(database_url: str, drivers: Mapping[str, DatabaseFactory], *, driver_defaults: Collection[str] = (),
                          calls: int = 12, concurrency: int = 4, pool_size: int = 2, statement_timeout_ms: int = 15_000,
                          log_path: Path | None = None, operations: Sequence[str] = OPERATIONS) -> CompatibilityTable:
    """Measure every driver of ``drivers`` through PgBouncer in front of ``database_url``.

    Each driver gets a PgBouncer of its own (transaction pooling, ``pool_size`` server
    connections handed out in turn), so no statement another driver prepared is left on its
    server connections. ``drivers`` maps a driver's name to its class
    (``app.registry.resolve(driver.factory)`` for the catalogue's pooled drivers); those named in
    ``driver_defaults`` run with ``ConnectionConfig.driver_defaults`` (the catalogue's entries
    with ``defaults_of``: the driver's own transactions and reset; an ``alternative_to`` entry,
    the same driver on another pool, runs the equal-work configuration like the rest). Blocking: run
    it outside an event loop (about 0.5 s a driver here). Raises ``PgBouncerMissingError``, whose
    message is the install hint, when PgBouncer is not installed.
    """
    if pool_size >= concurrency:
        raise ValueError(f"pool_size ({pool_size}) must be below concurrency ({concurrency}): clients must share server connections")
    expected = Expected.read(database_url, max(calls, 5))
    entries = []
    version = pgbouncer_version()
    for name, factory in drivers.items():
        with PgBouncerProcess(database_url, pool_size=pool_size, statement_timeout_ms=statement_timeout_ms,
                              server_round_robin=True, log_path=log_path) as bouncer:
            entries.append(asyncio.run(check_driver(bouncer.url, expected, name, factory, calls=calls, concurrency=concurrency,
                                                    statement_timeout_ms=statement_timeout_ms, driver_defaults=name in driver_defaults,
                                                    operations=operations)))
    return CompatibilityTable(version, "transaction", pool_size, concurrency, calls, tuple(entries))
