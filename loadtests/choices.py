"""The comparisons a team chooses from: drivers against the reference, FastAPI's share, the psycopg2 pool.

Every figure here is a ratio of two cases measured side by side (``pairing.compare``), or
through the reference case both were measured beside; never two geometric means divided, which
on a shared machine would measure the minutes between them as much as the drivers. Absolute
rates appear beside the ratios only as this machine's state at the time.

A driver is "fastest" only when the ratio of the best to the runner-up excludes 1 at 95%;
otherwise the table says the order is not resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.catalogue import DRIVERS, STEPS, Style
from loadtests.pairing import Comparison, compare
from loadtests.plan import REFERENCE_DRIVER, TABLE_WORKLOADS, own_style, reference
from loadtests.results import Record, is_main, successful_rps
from loadtests.summary import CaseSummary

#: What differs between a catalogue route and its hand-written ``minimal`` twin (``app/routes.py``'s docstring).
FRAMEWORK_DIFFERENCE = (
    "The catalogue's route is written as FastAPI's documentation writes one: its query model declared as "
    "`Annotated[Model, Query()]` (FastAPI validates and documents it) and a dict returned under `-> dict[str, Any]` "
    "(FastAPI infers a response model from it, validates the dict and serialises it). The `minimal` route checks "
    "`?id=` by hand and writes the JSON once with the standard library: the same answer, without the framework's work."
)
#: Why the two psycopg2 pools cost differently, as measured apart from any run (``db/drivers/psycopg2.py``,
#: ``ThreadedPsycopg2Database``'s docstring; tests/test_report.py keeps the two in step).
POOL_COST = (
    "Per checkout and check-in, QueuePool keeps a Condition-guarded queue, checks each record's recycle and "
    "invalidation times, wraps the connection in a new `_ConnectionFairy` with a weakref finalizer, and dispatches "
    "its `checkout` and `checkin` events; the threaded pool takes a semaphore and one lock, pops a list and reads the "
    "connection's status. In-process, checkout and check-in alone (2000 calls, cProfile): QueuePool 16 µs and 66 "
    "Python calls, the threaded pool 8 µs and 43: at two checkouts per request, 16 µs less of a lookup route's "
    "1.5-2 ms of service CPU, about 1% (`db/drivers/psycopg2.py`)."
)


@dataclass(frozen=True)
class Share:
    """1 - ratio: the share of throughput one side gives up, its interval mapped through."""

    center: float
    low: float | None
    high: float | None

    @classmethod
    def of(cls, found: Comparison) -> Share:
        ratio = found.interval
        if not ratio.bounded:
            return cls(1 - ratio.center, None, None)
        return cls(1 - ratio.center, 1 - ratio.high, 1 - ratio.low)

    @property
    def resolved(self) -> bool:
        """The interval excludes 0: the share is a cost (or a gain), not noise."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class Fastest:
    """The best case of a table over its runner-up, paired: a winner only when the interval excludes 1."""

    best: str
    runner_up: str
    ratio: Comparison | None

    @property
    def resolved(self) -> bool:
        return self.ratio is not None and self.ratio.interval.bounded and self.ratio.interval.low > 1


def fastest(records: list[Record], ranked: list[tuple[str, float]]) -> Fastest | None:
    """``ranked``: (case, ratio to the reference) of one table; the best over the runner-up, or None with fewer than two."""
    order = sorted(ranked, key=lambda item: -item[1])
    if len(order) < 2:
        return None
    best, runner_up = order[0][0], order[1][0]
    return Fastest(best, runner_up, compare(records, best, runner_up, successful_rps))


@dataclass(frozen=True)
class DriverEntry:
    """One pooled driver in its own style on one workload: its ratio to the reference, what a request cost it."""

    driver: str
    style: str
    case: CaseSummary
    #: Over the workload's reference case; None for the reference itself (or when no round holds both).
    ratio: Comparison | None
    reference: bool
    fastest: bool = False
    #: The catalogue's Setup as run.json recorded it (what the driver was configured to send).
    setup: dict[str, Any] | None = None

    @property
    def center(self) -> float | None:
        return 1.0 if self.reference else self.ratio.interval.center if self.ratio else None

    @property
    def documented_round_trips(self) -> int | None:
        """Round trips per request the setup documents: its statements per operation, once per step."""
        if not self.setup:
            return None
        return STEPS * len(self.setup["write"] if self.case.workload == "write" else self.setup["read"])


@dataclass(frozen=True)
class DriverWorkload:
    """The driver table of one workload: every driver against ``reference``, best first."""

    workload: str
    reference: str
    entries: list[DriverEntry]
    fastest: Fastest | None


@dataclass(frozen=True)
class DriverTable:
    workloads: list[DriverWorkload]
    #: Each driver's Setup (run.json's ``drivers``), for the notes under the table.
    setups: dict[str, dict[str, Any]]


def driver_table(records: list[Record], summaries: dict[str, CaseSummary], run: dict[str, Any]) -> DriverTable | None:
    """Each pooled driver in its own style against ``{workload}/sync/psycopg2``, on the profile's main measurements."""
    main = [r for r in records if is_main(r)]
    setups = {d["name"]: d["setup"] for d in run.get("drivers") or [] if isinstance(d, dict) and d.get("setup")}
    tables = []
    for workload in TABLE_WORKLOADS:
        ref = reference(workload)
        if ref not in summaries:
            continue
        entries = []
        for driver in DRIVERS:
            key = f"{workload}/{own_style(driver.name)}/{driver.name}" if driver.pooled else ""
            if key not in summaries:
                continue
            is_ref = driver.name == REFERENCE_DRIVER
            ratio = None if is_ref else compare(main, key, ref, successful_rps)
            entries.append(DriverEntry(driver.name, own_style(driver.name), summaries[key], ratio, is_ref,
                                       setup=setups.get(driver.name)))
        ranked = [(e.case.case, c) for e in entries if (c := e.center) is not None]
        best = fastest(main, ranked)
        winner = best.best if best and best.resolved else None
        entries = [DriverEntry(e.driver, e.style, e.case, e.ratio, e.reference, e.case.case == winner, e.setup)
                   for e in sorted(entries, key=lambda e: (-(e.center or 0.0), e.driver))]
        tables.append(DriverWorkload(workload, ref, entries, best))
    shown = {e.driver for table in tables for e in table.entries}
    return DriverTable(tables, {name: setup for name, setup in setups.items() if name in shown}) if tables else None


@dataclass(frozen=True)
class FrameworkShare:
    """A driver's idiomatic lookup route over its hand-written ``minimal`` one: what FastAPI's way costs."""

    driver: str
    idiomatic: str
    minimal: str
    ratio: Comparison | None

    @property
    def share(self) -> Share | None:
        return Share.of(self.ratio) if self.ratio else None


def framework_shares(records: list[Record], summaries: dict[str, CaseSummary]) -> list[FrameworkShare]:
    main = [r for r in records if is_main(r)]
    found = []
    for driver in DRIVERS:
        if Style.MINIMAL not in driver.styles:
            continue
        idiomatic, minimal = f"lookup/{own_style(driver.name)}/{driver.name}", f"lookup/minimal/{driver.name}"
        if idiomatic in summaries and minimal in summaries:
            found.append(FrameworkShare(driver.name, idiomatic, minimal, compare(main, idiomatic, minimal, successful_rps)))
    return found


@dataclass(frozen=True)
class PoolRow:
    workload: str
    numerator: str
    denominator: str
    ratio: Comparison | None


@dataclass(frozen=True)
class PoolChoice:
    """A driver on another pool (``Driver.alternative_to``) against the same driver on its usual one."""

    alternative: str
    base: str
    rows: list[PoolRow]
    alternative_setup: str | None
    base_setup: str | None
    cost: str


def pool_choices(records: list[Record], summaries: dict[str, CaseSummary], run: dict[str, Any]) -> list[PoolChoice]:
    main = [r for r in records if is_main(r)]
    setups = {d["name"]: (d.get("setup") or {}).get("summary") for d in run.get("drivers") or [] if isinstance(d, dict)}
    found = []
    for driver in DRIVERS:
        if not driver.alternative_to:
            continue
        rows = []
        for workload in TABLE_WORKLOADS:
            num = f"{workload}/{own_style(driver.name)}/{driver.name}"
            den = f"{workload}/{own_style(driver.alternative_to)}/{driver.alternative_to}"
            if num in summaries and den in summaries:
                rows.append(PoolRow(workload, num, den, compare(main, num, den, successful_rps)))
        if rows:
            cost = POOL_COST if driver.alternative_to == "psycopg2" else ""
            found.append(PoolChoice(driver.name, driver.alternative_to, rows, setups.get(driver.name),
                                    setups.get(driver.alternative_to), cost))
    return found
