"""How often a verdict changes when nothing changed: findings across repeated runs of one setup, and
the driver table's rows where the runs kept their records."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtests.choices import DriverTable, driver_table
from loadtests.findings import evaluate_all
from loadtests.legacy import read
from loadtests.profiles import RANKED_HALF_WIDTH
from loadtests.results import Record
from loadtests.stats import Interval
from loadtests.summary import summarise


@dataclass(frozen=True)
class Flips:
    """One finding's verdicts over a series of runs, in order."""

    id: str
    required: bool
    labels: tuple[str, ...]  # as the report shows them: "PASS, UNEXPLAINED" included
    statuses: tuple[str, ...]  # the verdicts proper: pass, fail, inconclusive, ...
    #: Each run's ratio (the centre of its paired interval), None where it had none.
    ratios: tuple[float | None, ...] = ()

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """The smallest and largest ratio over the runs: how far the same measurement moved."""
        known = [r for r in self.ratios if r is not None]
        return (min(known), max(known)) if known else None

    @property
    def changes(self) -> int:
        """Consecutive runs whose verdicts differ (an unexplained pass is still a pass)."""
        return sum(a != b for a, b in zip(self.statuses, self.statuses[1:], strict=False))


@dataclass(frozen=True)
class Row:
    """One row of the driver table (a driver over the reference, on one workload) in each run of a series."""

    workload: str
    driver: str
    #: Each run's interval of the ratio and its rounds; None where the run had no such row.
    intervals: tuple[Interval | None, ...]
    rounds: tuple[int | None, ...]

    @property
    def apart(self) -> bool:
        """Two runs whose intervals do not overlap: the same ratio measured apart."""
        known = [i for i in self.intervals if i is not None]
        return any(a.low > b.high or b.low > a.high for a, b in itertools.combinations(known, 2))


@dataclass(frozen=True)
class DriverRows:
    """The driver table across a series: every row, and each run's fastest driver per workload."""

    rows: tuple[Row, ...]
    #: Per workload, each run's fastest case where its interval over the runner-up excludes 1, else None.
    fastest: dict[str, tuple[str | None, ...]]
    #: The half-width (log scale) a row's interval is held to: the profile's ``ranked_half_width``.
    half_width: float

    def narrow(self, interval: Interval | None) -> bool:
        """A row's interval in one run is no wider than ``half_width``."""
        return interval is not None and interval.bounded and interval.half_width <= self.half_width

    def within(self) -> tuple[int, ...]:
        """Per run, how many rows are ``narrow``."""
        runs = len(self.rows[0].intervals) if self.rows else 0
        return tuple(sum(self.narrow(row.intervals[n]) for row in self.rows) for n in range(runs))

    @property
    def apart(self) -> int:
        return sum(row.apart for row in self.rows)


def driver_rows(tables: list[DriverTable | None], half_width: float) -> DriverRows | None:
    """Line up the driver tables of a series' runs (None for a run that kept no records)."""
    found: dict[tuple[str, str], list[tuple[Interval, int] | None]] = {}
    for number, table in enumerate(tables):
        for workload in table.workloads if table else []:
            for entry in workload.entries:
                if entry.ratio is not None:
                    row = found.setdefault((workload.workload, entry.driver), [None] * len(tables))
                    row[number] = (entry.ratio.interval, entry.ratio.rounds)
    if not found:
        return None
    rows = tuple(Row(workload, driver, tuple(r[0] if r else None for r in runs), tuple(r[1] if r else None for r in runs))
                 for (workload, driver), runs in sorted(found.items()))
    names = dict.fromkeys(w.workload for table in tables if table for w in table.workloads)
    fastest = {name: tuple(_resolved(table, name) for table in tables) for name in names}
    return DriverRows(rows, fastest, half_width)


def _resolved(table: DriverTable | None, workload: str) -> str | None:
    best = next((w.fastest for w in table.workloads if w.workload == workload), None) if table else None
    return best.best if best is not None and best.resolved else None


@dataclass(frozen=True)
class Series:
    """Runs of one profile, their exit codes, and every finding's verdicts across them."""

    profile: str
    folders: tuple[Path, ...]
    exit_codes: tuple[int | None, ...]
    flips: tuple[Flips, ...]
    seconds: tuple[float | None, ...] = ()  # each run's wall time, start to finish
    #: The driver table across the runs that kept their records (None when none had one).
    drivers: DriverRows | None = None

    @property
    def duration_range(self) -> tuple[float, float] | None:
        """The shortest and longest run, in seconds."""
        known = [s for s in self.seconds if s is not None]
        return (min(known), max(known)) if known else None

    @property
    def required_changes(self) -> int:
        return sum(f.changes for f in self.flips if f.required)

    @property
    def unexpected_exits(self) -> tuple[int, ...]:
        """Runs (0-based) whose exit code is not what their verdicts call for: 0, or 4 for a run that measured
        no required finding at all (a profile such as ``drivers`` or ``production``, by design)."""
        unmeasured = [all(f.statuses[n] == "not measured" for f in self.flips if f.required)
                      for n in range(len(self.exit_codes))]
        return tuple(n for n, code in enumerate(self.exit_codes) if code not in ((0, 4) if unmeasured[n] else (0,)))


def verdicts_of(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[Record]]:
    """run.json, the folder's verdicts and its records: verdicts judged from the records, or as run.json
    recorded them (a folder kept for its verdicts alone, as results/stability/ is)."""
    run, records = read(folder)
    if records:
        return run, [verdict.to_dict() for verdict in evaluate_all(records, run)], records
    return run, list(run.get("verdicts") or []), records


def wall_seconds(run: dict[str, Any]) -> float | None:
    """How long a run took, from run.json's started and finished."""
    try:
        return (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def series(folders: list[Path]) -> list[Series]:
    """Group run folders by profile (in the given order) and line up their verdicts."""
    by_profile: dict[str, list[tuple[Path, dict[str, Any], dict[str, dict[str, Any]]]]] = {}
    tables: dict[str, list[DriverTable | None]] = {}
    for folder in folders:
        run, verdicts, records = verdicts_of(folder)
        name = str((run.get("profile") or {}).get("name") or "?")
        by_profile.setdefault(name, []).append((folder, run, {v["id"]: v for v in verdicts}))
        tables.setdefault(name, []).append(
            driver_table(records, {s.case: s for s in summarise(records)}, run) if records else None)
    result = []
    for name, runs in by_profile.items():
        ids = list(dict.fromkeys(id for _, _, verdicts in runs for id in verdicts))
        flips = []
        for id in ids:
            found = [verdicts.get(id, {"status": "not measured", "label": "NOT MEASURED"}) for _, _, verdicts in runs]
            required = any(v.get("required") for _, _, verdicts in runs for v in [verdicts.get(id, {})])
            ratios = tuple(ratio.get("center") if isinstance(ratio := v.get("ratio"), dict) else None for v in found)
            flips.append(Flips(id, required, tuple(v["label"] for v in found), tuple(v["status"] for v in found), ratios))
        codes = tuple(code if isinstance(code := run.get("exit_code"), int) else None for _, run, _ in runs)
        seconds = tuple(wall_seconds(run) for _, run, _ in runs)
        half_width = float((runs[0][1].get("profile") or {}).get("ranked_half_width") or RANKED_HALF_WIDTH)
        result.append(Series(name, tuple(folder for folder, _, _ in runs), codes, tuple(flips), seconds,
                             driver_rows(tables[name], half_width)))
    return result
