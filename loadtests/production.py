"""The production shape as data: the database a hop away (RTT levels), PgBouncer, several workers.

Each setup is its own server (``plan``: a setup is part of a block's name), so a ratio is formed
only within a setup, against the setup's reference case. The same case in two setups was never
measured side by side: its two rates are shown as each setup's state, and no ratio between them.

The crossover of an async driver over its sync counterpart is stated only as the intervals
resolve it (``crossover_text``), never interpolated between point estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.catalogue import WORKLOADS
from loadtests.choices import Fastest, fastest
from loadtests.pairing import Comparison, compare
from loadtests.plan import CROSSOVER_PAIRS, reference
from loadtests.results import Record, successful_rps
from loadtests.stats import Interval, median
from loadtests.summary import CaseSummary, main_cases, rtt_cases, summarise

#: The async driver "wins" at this ratio over its sync counterpart (the RTT findings' threshold).
WIN = 1.5
_WORKLOAD_ORDER = [workload.name for workload in WORKLOADS]


def _workload_rank(workload: str) -> int:
    return _WORKLOAD_ORDER.index(workload) if workload in _WORKLOAD_ORDER else len(_WORKLOAD_ORDER)


def in_setup(records: list[Record], rtt_ms: float, via: str, workers: int | None = None) -> list[Record]:
    """The rounds of one setup (its RTT, path to Postgres and, when given, workers): no sweep, no finding's extra."""
    return [r for r in records if not r.get("sweep") and not r.get("for_finding")
            and float(r.get("rtt_ms") or 0) == rtt_ms and (r.get("via") or "direct") == via
            and (workers is None or int(r.get("workers") or 1) == workers)]


def crossover_text(levels: list[tuple[float, float | None, float | None]], win: float = WIN) -> str:
    """Where a ratio crosses ``win``, from (RTT, low, high) per level, as far as the intervals resolve it.

    "already at X ms" when the first level's whole interval is at or above ``win``; "between X and Y ms" when
    Y's whole interval is at or above it and the level before, X, wholly below; "not within Y ms" when every
    level is wholly below; otherwise "not resolved". A point value is an interval with low = high.
    """
    known = [(rtt, low, high) for rtt, low, high in levels if low is not None and high is not None]
    if not known:
        return "-"
    for index, (rtt, low, _) in enumerate(levels):
        if low is not None and low >= win:
            if index == 0:
                return f"already at {rtt:g} ms"
            before, _, below = levels[index - 1]
            return f"between {before:g} and {rtt:g} ms" if below is not None and below < win else "not resolved"
    if len(known) == len(levels) and all(high < win for _, _, high in known):
        return f"not within {levels[-1][0]:g} ms"
    return "not resolved"


@dataclass(frozen=True)
class RttPoint:
    rtt_ms: float
    comparison: Comparison | None  # async over sync, side by side at this RTT
    predicted: float | None  # the ratio of the two cases' calibration predictions at this RTT

    @property
    def ratio(self) -> Interval | None:
        return self.comparison.interval if self.comparison else None


@dataclass(frozen=True)
class Crossover:
    """Where an async driver starts to serve ``WIN`` times its sync counterpart as the database moves away."""

    workload: str
    asynchronous: str
    synchronous: str
    points: list[RttPoint]
    WIN = WIN

    @property
    def reached(self) -> str:
        """The measured crossover in words, as the intervals resolve it."""
        return crossover_text([(p.rtt_ms, p.ratio.low, p.ratio.high) if p.ratio and p.ratio.bounded
                               else (p.rtt_ms, None, None) for p in self.points])

    @property
    def predicted_reached(self) -> str:
        """The model's crossover: the same rule on its point predictions."""
        return crossover_text([(p.rtt_ms, p.predicted, p.predicted) for p in self.points])


@dataclass(frozen=True)
class RttSeries:
    """Cases measured at several round-trip times to Postgres, and the crossovers they show."""

    levels: list[float]
    cases: dict[str, dict[float, CaseSummary]]
    crossovers: list[Crossover]
    proxy_cpu_ms: float | None  # the wire proxy's own CPU per request, median over the cases behind it
    measured_rtt: dict[str, float]  # asked -> measured added RTT (ms), from run.json
    win: float = WIN


def rtt_series(run: dict[str, Any], records: list[Record]) -> RttSeries | None:
    """The RTT sweep (``--rtt-levels``), or a run whose database was a hop away at one RTT (``--db-rtt``)."""
    found = rtt_cases(records)
    if not found:  # one level: no sweep, but the added RTT and the proxy's CPU are still the report's to say
        found = {c.case: [c] for c in main_cases(records) if c.rtt_ms and c.records[0].get("pooled")}
        if not found:
            return None
    levels = sorted({point.rtt_ms for points in found.values() for point in points})
    cases = {case: {point.rtt_ms: point for point in points} for case, points in found.items()}
    workers = min((int(r.get("workers") or 1) for r in records if not r.get("variant")), default=1)
    crossovers = []
    for workload in sorted({points[0].workload for points in found.values()} if len(levels) > 1 else (), key=_workload_rank):
        for asynchronous, synchronous in CROSSOVER_PAIRS:
            num, den = f"{workload}/async/{asynchronous}", f"{workload}/sync/{synchronous}"
            if num not in cases or den not in cases:
                continue
            points = []
            for level in levels:
                a, b = cases[num].get(level), cases[den].get(level)
                predicted = a.predicted_rps / b.predicted_rps if a and b and a.predicted_rps and b.predicted_rps else None
                found_ratio = compare(in_setup(records, level, "direct", workers), num, den, successful_rps)
                points.append(RttPoint(level, found_ratio, predicted))
            crossovers.append(Crossover(workload, num, den, points))
    proxy = median([v for points in found.values() for point in points if point.rtt_ms
                    and (v := point.cpu_ms("proxy_s")) is not None])
    measured = {str(k): float(v) for k, v in (run.get("rtt_measured") or {}).items()}
    return RttSeries(levels, cases, crossovers, proxy, measured)


@dataclass(frozen=True)
class SetupCell:
    """One case in one setup: its rate there, and its ratio to the setup's reference, side by side."""

    summary: CaseSummary
    ratio: Comparison | None  # over the setup's reference; None for the reference itself
    reference: bool
    fastest: bool = False

    @property
    def center(self) -> float | None:
        return 1.0 if self.reference else self.ratio.interval.center if self.ratio else None


@dataclass(frozen=True)
class SetupColumn:
    """One setup (a server of its own): its label, reference case, and whether its best case is resolved."""

    label: str
    reference: str | None
    fastest: Fastest | None


@dataclass(frozen=True)
class SetupTable:
    """Each case in each setup the run measured it in (RTT, PgBouncer, workers): the production shape."""

    setups: list[SetupColumn]
    rows: dict[str, dict[str, SetupCell]]

    @property
    def references(self) -> list[str]:
        return list(dict.fromkeys(s.reference for s in self.setups if s.reference))


def setup_table(records: list[Record]) -> SetupTable | None:
    """Only for runs that vary more than the RTT (PgBouncer or worker counts)."""
    if not any(r.get("via") == "pgbouncer" or (r.get("workers") or 1) > 1 for r in records if r.get("variant")):
        return None
    cases = summarise(r for r in records if not r.get("sweep") and not r.get("for_finding"))
    order = sorted({(c.workers, c.via != "direct", c.rtt_ms, c.via, c.setup) for c in cases})
    columns: list[SetupColumn] = []
    rows: dict[str, dict[str, SetupCell]] = {}
    for workers, _, rtt, via, label in order:
        mine = in_setup(records, rtt, via, workers)
        here = [c for c in cases if c.setup == label]
        workloads = sorted({c.workload for c in here}, key=_workload_rank)
        cells: dict[str, SetupCell] = {}
        best: Fastest | None = None
        for workload in workloads:
            ref = reference(workload)
            has_ref = any(c.case == ref for c in here)
            for case in (c for c in here if c.workload == workload):
                ratio = compare(mine, case.case, ref, successful_rps) if has_ref and case.case != ref else None
                cells[case.case] = SetupCell(case, ratio, case.case == ref)
            ranked = [(key, center) for key, cell in cells.items()
                      if cell.summary.workload == workload and (center := cell.center) is not None]
            found = fastest(mine, ranked) if has_ref else None
            if found is not None:
                best = best or found
                if found.resolved:
                    won = cells[found.best]
                    cells[found.best] = SetupCell(won.summary, won.ratio, won.reference, True)
        refs = [reference(w) for w in workloads if any(c.case == reference(w) for c in here)]
        columns.append(SetupColumn(label, refs[0] if refs else None, best))
        for key, cell in cells.items():
            rows.setdefault(key, {})[label] = cell
    return SetupTable(columns, {case: by for case, by in rows.items() if len(by) > 1})


@dataclass(frozen=True)
class PgBouncerCase:
    """One case measured directly and through PgBouncer: two servers, so each with its own setup's reference."""

    direct: CaseSummary
    pooled: CaseSummary
    direct_ratio: Comparison | None  # over the reference, directly
    pooled_ratio: Comparison | None  # over the reference, through PgBouncer
    reference: str


@dataclass(frozen=True)
class PgBouncerFacts:
    table: dict[str, Any]  # db.pgbouncer.compatibility.CompatibilityTable.to_dict()
    cases: list[PgBouncerCase]
    pool_size: int | None


def pgbouncer_facts(run: dict[str, Any], records: list[Record]) -> PgBouncerFacts | None:
    table = run.get("pgbouncer")
    through = [r for r in records if r.get("via") == "pgbouncer"]
    if not table and not through:
        return None
    direct = {(c.case, c.rtt_ms, c.workers): c for c in summarise(
        r for r in records if not r.get("sweep") and not r.get("for_finding") and (r.get("via") or "direct") == "direct")}
    cases = []
    for pooled in summarise(r for r in through if not r.get("sweep") and not r.get("for_finding")):
        plain = direct.get((pooled.case, pooled.rtt_ms, pooled.workers))
        if plain is None:
            continue
        ref = reference(pooled.workload)

        def to_ref(via: str, summary: CaseSummary = pooled, ref: str = ref) -> Comparison | None:
            if summary.case == ref:
                return None
            return compare(in_setup(records, summary.rtt_ms, via, summary.workers), summary.case, ref, successful_rps)

        cases.append(PgBouncerCase(plain, pooled, to_ref("direct"), to_ref("pgbouncer"), ref))
    sizes = [p.get("pool_size") for r in through if (p := r.get("pgbouncer"))]
    return PgBouncerFacts(table or {}, cases, sizes[0] if sizes else (table or {}).get("pool_size"))
