"""What a report says, as data: built from a run folder, judged by ``findings`` and ``model``, laid out by templates.

Nothing here formats a number or decides a verdict: the templates format, and judgement
lives in ``findings`` (verdicts) and ``model`` (predictions and their explanations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.catalogue import ARTICLE_CASES, STEPS, WORKLOADS
from loadtests.compare import ComparisonResult
from loadtests.findings import Verdict, required_failures, required_unsettled
from loadtests.model import explain, in_band
from loadtests.results import Record, is_main, successful_rps
from loadtests.stats import Interval, median, ratio_interval
from loadtests.summary import CaseSummary, finding_cases, main_cases, rtt_cases, summarise, sweep_cases

#: The article's four cases (S = 3 s, ab -n 200 -c 100, AnyIO's 40 threads): rps as published.
ARTICLE_RPS = {1: 5.53, 2: 0.17, 3: 11.06, 4: 8.29}
ARTICLE_STYLES = {1: "sync", 2: "async-blocking", 3: "async", 4: "threadpool"}
WAIT_CASES = {number: case for case, number in ARTICLE_CASES.items()}
#: The same four styles on real Postgres: ``SELECT pg_sleep(S)`` through psycopg2 and asyncpg.
PG_SLEEP_TWINS = {
    1: "pg_sleep/sync/psycopg2",
    2: "pg_sleep/async-blocking/psycopg2",
    3: "pg_sleep/async/asyncpg",
    4: "pg_sleep/threadpool/psycopg2",
}
#: The order reports present workloads and styles in.
WORKLOAD_ORDER = tuple(workload.name for workload in WORKLOADS)
STYLE_ORDER = ("sync", "async-blocking", "async", "threadpool", "threadpool-only", "minimal")


def workload_rank(workload: str) -> int:
    return WORKLOAD_ORDER.index(workload) if workload in WORKLOAD_ORDER else len(WORKLOAD_ORDER)


def style_rank(style: str) -> int:
    return STYLE_ORDER.index(style) if style in STYLE_ORDER else len(STYLE_ORDER)


@dataclass(frozen=True)
class CaseRow:
    """A case and the note explaining it."""

    case: CaseSummary
    note: str


@dataclass(frozen=True)
class WorkloadTable:
    name: str
    description: str
    rows: list[CaseRow]


@dataclass(frozen=True)
class ArticleSide:
    case: str
    summary: CaseSummary | None
    to_case_1: Interval | None
    predicted_to_case_1: float | None


@dataclass(frozen=True)
class ArticleRow:
    number: int
    style: str
    article_rps: float
    article_to_case_1: float
    wait: ArticleSide
    twin: ArticleSide


@dataclass(frozen=True)
class DriverRow:
    """One database driver in its own style (``sync`` for a sync driver, ``async`` for an async one), per workload,
    with what it was set up to send (the catalogue's ``Setup``, as run.json recorded it)."""

    driver: str
    style: str
    cases: dict[str, CaseSummary]
    setup: dict[str, Any] | None = None

    def documented_round_trips(self, workload: str) -> int | None:
        """Round trips per request the setup documents: its statements per operation, twice (STEPS)."""
        if not self.setup:
            return None
        return STEPS * len(self.setup["write"] if workload == "write" else self.setup["read"])


@dataclass(frozen=True)
class ModelFit:
    """How many cases the model explains (measured within ``model.MODEL_BAND`` of predicted), and the misses."""

    within: int
    total: int
    misses: list[CaseRow]


@dataclass(frozen=True)
class RttPoint:
    rtt_ms: float
    ratio: Interval | None  # async over sync, paired over the rounds at this RTT
    predicted: float | None  # the model's ratio at this RTT


@dataclass(frozen=True)
class Crossover:
    """Where an async driver starts to beat its sync counterpart by ``WIN`` as the database moves away."""

    workload: str
    asynchronous: str
    synchronous: str
    points: list[RttPoint]
    measured_ms: float | None  # interpolated; None when never reached within the levels
    predicted_ms: float | None
    WIN = 1.5

    @property
    def reached(self) -> str:
        """The crossover in words, for a table cell."""
        return _crossing_text(self.measured_ms, self.points, lambda p: p.ratio.center if p.ratio else None)

    @property
    def predicted_reached(self) -> str:
        return _crossing_text(self.predicted_ms, self.points, lambda p: p.predicted)


@dataclass(frozen=True)
class RttSeries:
    """Cases measured at several round-trip times to Postgres, and the crossovers they show."""

    levels: list[float]
    cases: dict[str, dict[float, CaseSummary]]
    crossovers: list[Crossover]
    proxy_cpu_ms: float | None  # the wire proxy's own CPU per request, median over the cases behind it
    measured_rtt: dict[str, float]  # asked -> measured added RTT (ms), from run.json


def crossing(points: list[tuple[float, float | None]], win: float = Crossover.WIN) -> float | None:
    """The RTT at which ``ratio`` first reaches ``win``, interpolated linearly between levels; 0 if at the first level."""
    previous: tuple[float, float] | None = None
    for rtt, ratio in points:
        if ratio is None:
            continue
        if ratio >= win:
            if previous is None:
                return rtt
            (r0, v0) = previous
            return r0 + (win - v0) / (ratio - v0) * (rtt - r0) if ratio != v0 else rtt
        previous = (rtt, ratio)
    return None


def _crossing_text(value: float | None, points: list[RttPoint], get: Any) -> str:
    if value is not None:
        return f"{value:.2g} ms" if value > points[0].rtt_ms else f"already at {points[0].rtt_ms:g} ms"
    if not any(get(p) for p in points):
        return "-"
    return f"not within {points[-1].rtt_ms:g} ms"


RTT_PAIRS = (("asyncpg", "psycopg2"), ("psycopg3-async", "psycopg3-sync"))


def _paired_at(records: list[Record], num: str, den: str, rtt: float, value: Any,
               num_via: str = "direct", den_via: str = "direct") -> Interval | None:
    """The ratio of two cases at one RTT (and path to Postgres), paired over the rounds both were measured in."""
    def at(case: str, via: str) -> dict[int, float]:
        return {int(r.get("round", 0)): v for r in records if r["case"] == case and not r.get("sweep")
                and not r.get("for_finding") and float(r.get("rtt_ms") or 0) == rtt
                and (r.get("via") or "direct") == via and (v := value(r))}

    a, b = at(num, num_via), at(den, den_via)
    return ratio_interval([(a[k], b[k]) for k in sorted(a.keys() & b.keys())])


@dataclass(frozen=True)
class PgBouncerCase:
    """One case measured directly and through PgBouncer, in the same rounds."""

    direct: CaseSummary
    pooled: CaseSummary
    ratio: Interval | None  # through PgBouncer over direct, paired over the rounds


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
    direct = {(c.case, c.rtt_ms): c for c in summarise(r for r in records if not r.get("sweep") and not r.get("for_finding")
                                                        and (r.get("via") or "direct") == "direct")}
    cases = [PgBouncerCase(direct[(c.case, c.rtt_ms)], c,
                           _paired_at(records, c.case, c.case, c.rtt_ms, successful_rps, "pgbouncer", "direct"))
             for c in summarise(r for r in through if not r.get("sweep")) if (c.case, c.rtt_ms) in direct]
    sizes = [p.get("pool_size") for r in through if (p := r.get("pgbouncer"))]
    return PgBouncerFacts(table or {}, cases, sizes[0] if sizes else (table or {}).get("pool_size"))


def rtt_series(run: dict[str, Any], records: list[Record]) -> RttSeries | None:
    """The RTT sweep (``--rtt-levels``), or a run whose database was a hop away at one RTT (``--db-rtt``)."""
    found = rtt_cases(records)
    if not found:  # one level: no sweep, but the added RTT and the proxy's CPU are still the report's to say
        found = {c.case: [c] for c in main_cases(records) if c.rtt_ms and c.records[0].get("pooled")}
        if not found:
            return None
    levels = sorted({point.rtt_ms for points in found.values() for point in points})
    cases = {case: {point.rtt_ms: point for point in points} for case, points in found.items()}
    crossovers = []
    for workload in sorted({points[0].workload for points in found.values()} if len(levels) > 1 else (), key=workload_rank):
        for asynchronous, synchronous in RTT_PAIRS:
            num, den = f"{workload}/async/{asynchronous}", f"{workload}/sync/{synchronous}"
            if num not in cases or den not in cases:
                continue
            points = []
            for level in levels:
                a, b = cases[num].get(level), cases[den].get(level)
                predicted = a.predicted_rps / b.predicted_rps if a and b and a.predicted_rps and b.predicted_rps else None
                points.append(RttPoint(level, _paired_at(records, num, den, level, successful_rps), predicted))
            crossovers.append(Crossover(
                workload, num, den, points,
                crossing([(p.rtt_ms, p.ratio.center if p.ratio else None) for p in points]),
                crossing([(p.rtt_ms, p.predicted) for p in points]),
            ))
    proxy = median([v for points in found.values() for point in points if point.rtt_ms
                    and (v := point.cpu_ms("proxy_s")) is not None])
    measured = {str(k): float(v) for k, v in (run.get("rtt_measured") or {}).items()}
    return RttSeries(levels, cases, crossovers, proxy, measured)


@dataclass(frozen=True)
class SetupTable:
    """Each case in each setup the run measured it in (RTT, PgBouncer, workers): the production shape."""

    setups: list[str]
    rows: dict[str, dict[str, CaseSummary]]

    def best(self, setup: str) -> str | None:
        """The case with the highest throughput in ``setup``."""
        found = {case: rps.center for case, by in self.rows.items() if setup in by and (rps := by[setup].rps)}
        return max(found, key=lambda case: found[case]) if found else None


def setup_table(records: list[Record]) -> SetupTable | None:
    """Only for runs that vary more than the RTT (PgBouncer or worker counts)."""
    if not any(r.get("via") == "pgbouncer" or (r.get("workers") or 1) > 1 for r in records if r.get("variant")):
        return None
    cases = summarise(r for r in records if not r.get("sweep") and not r.get("for_finding"))
    order = sorted({(c.workers, c.via != "direct", c.rtt_ms, c.setup) for c in cases})
    rows: dict[str, dict[str, CaseSummary]] = {}
    for case in cases:
        rows.setdefault(case.case, {})[case.setup] = case
    return SetupTable([label for *_, label in order], {case: by for case, by in rows.items() if len(by) > 1})


@dataclass(frozen=True)
class Plot:
    file: str
    caption: str


@dataclass(frozen=True)
class Facts:
    """Everything report.md and report.html show, in the order they show it."""

    run: dict[str, Any]
    profile: dict[str, Any]
    environment: dict[str, Any]
    server: dict[str, Any]
    partial: str | None
    verdicts: list[Verdict]
    failed: list[Verdict]
    unsettled: list[Verdict]
    shape_warnings: list[str]
    measurements: int
    sweep_points: int
    rounds: int
    max_rounds: int
    sample_seconds: float | None
    ping_interval_ms: float | None
    article: list[ArticleRow]
    workloads: list[WorkloadTable]
    model_fit: ModelFit
    drivers: list[DriverRow]
    driver_workloads: list[str]
    extras: list[CaseRow]
    rtt: RttSeries | None
    pgbouncer: PgBouncerFacts | None
    setups: SetupTable | None
    sweeps: dict[str, list[CaseRow]]
    plots: list[Plot] = field(default_factory=list)
    plot_error: str | None = None
    compare: ComparisonResult | None = None


def partial_note(run: dict[str, Any], records: list[Record]) -> str | None:
    planned, status = run.get("planned"), run.get("status")
    if status in (None, "complete"):
        return None
    text = f"partial run: {len(records)} of {planned} planned measurements" if planned else f"partial run: {len(records)} measurements"
    return text + f" (status: {status})"


def shape_warnings(run: dict[str, Any]) -> list[str]:
    """Where a server measured differs from the shape the profile declares (its findings' thresholds assume it)."""
    declared = (run.get("profile") or {}).get("declared") or {}
    warnings = []
    for index, server in enumerate(run.get("servers") or []):
        pools: set[Any]  # run.json's values, as JSON gave them
        tokens, pools = server.get("threadpool_tokens"), {p.get("max") for p in (server.get("pools") or {}).values() if isinstance(p, dict)}
        if declared.get("threadpool_tokens") not in (None, tokens):
            warnings.append(f"server {index} ran {tokens} threadpool tokens; the profile declares {declared['threadpool_tokens']}")
        if declared.get("pool_max") is not None and pools and pools != {declared["pool_max"]}:
            warnings.append(f"server {index} ran pools of {', '.join(map(str, sorted(pools)))}; the profile declares {declared['pool_max']}")
    return list(dict.fromkeys(warning.split(" ", 2)[2] for warning in warnings))


def _paired(records: list[Record], num: str, den: str, value: Any = successful_rps) -> Interval | None:
    """The ratio of two main cases over the rounds both were measured in."""
    a = {r.get("round", 0): v for r in records if r["case"] == num and is_main(r) and (v := value(r))}
    b = {r.get("round", 0): v for r in records if r["case"] == den and is_main(r) and (v := value(r))}
    return ratio_interval([(a[k], b[k]) for k in sorted(a.keys() & b.keys())])


def _article(records: list[Record], summaries: dict[str, CaseSummary]) -> list[ArticleRow]:
    if not any(case in summaries for case in [*WAIT_CASES.values(), *PG_SLEEP_TWINS.values()]):
        return []

    def side(case: str, base: str) -> ArticleSide:
        summary = summaries.get(case)
        predicted = base_predicted = None
        if summary and base in summaries:
            predicted, base_predicted = summary.predicted_rps, summaries[base].predicted_rps
        return ArticleSide(case, summary, _paired(records, case, base),
                           predicted / base_predicted if predicted and base_predicted else None)

    return [
        ArticleRow(n, ARTICLE_STYLES[n], ARTICLE_RPS[n], ARTICLE_RPS[n] / ARTICLE_RPS[1],
                   side(WAIT_CASES[n], WAIT_CASES[1]), side(PG_SLEEP_TWINS[n], PG_SLEEP_TWINS[1]))
        for n in (1, 2, 3, 4)
    ]


def _workloads(cases: list[CaseSummary]) -> list[WorkloadTable]:
    descriptions = {workload.name: workload.description for workload in WORKLOADS}
    grouped: dict[str, list[CaseSummary]] = {}
    for case in cases:
        grouped.setdefault(case.workload, []).append(case)
    tables = []
    for name in sorted(grouped, key=lambda w: (workload_rank(w), w)):
        rows = sorted(grouped[name], key=lambda c: (style_rank(c.style), -(c.rps.center if c.rps else 0.0), c.case))
        tables.append(WorkloadTable(name, descriptions.get(name, ""), [CaseRow(c, explain(c)) for c in rows]))
    return tables


def model_fit(cases: list[CaseSummary]) -> ModelFit:
    judged = [case for case in cases if case.efficiency is not None]
    misses = [CaseRow(case, explain(case)) for case in judged if not in_band(case.efficiency)]
    return ModelFit(len(judged) - len(misses), len(judged), misses)


def _drivers(cases: list[CaseSummary], run: dict[str, Any]) -> tuple[list[DriverRow], list[str]]:
    """Each pooled driver's cases in its native style: the driver comparison on equal terms."""
    setups = {d["name"]: d.get("setup") for d in run.get("drivers") or [] if isinstance(d, dict)}
    native = [c for c in cases if c.records[0].get("pooled") and c.style in ("sync", "async") and not c.records[0].get("twin")]
    workloads = sorted({c.workload for c in native}, key=workload_rank)
    rows: dict[str, DriverRow] = {}
    for case in native:
        row = rows.setdefault(case.driver, DriverRow(case.driver, case.style, {}, setups.get(case.driver)))
        row.cases[case.workload] = case
    return sorted(rows.values(), key=lambda r: (style_rank(r.style), r.driver)), workloads


def build(run: dict[str, Any], records: list[Record], verdicts: list[Verdict]) -> Facts:
    """The facts of one run folder's report (plots and comparison are added by the caller)."""
    profile = run.get("profile") or {}
    servers = run.get("servers") or []
    main = main_cases(records)
    summaries = {case.case: case for case in main}
    durations = [s for case in main if (s := case.sample_seconds)]
    drivers, driver_workloads = _drivers(main, run)
    return Facts(
        run=run,
        profile=profile,
        environment=run.get("environment") or {},
        server=servers[0] if servers else {},
        partial=partial_note(run, records),
        verdicts=verdicts,
        failed=required_failures(verdicts),
        unsettled=required_unsettled(verdicts),
        shape_warnings=shape_warnings(run),
        measurements=len(records),
        sweep_points=sum(1 for r in records if r.get("sweep")),
        rounds=int(profile.get("repeat") or 1),
        max_rounds=max((int(r.get("round", 0)) + 1 for r in records if not r.get("sweep")), default=0),
        sample_seconds=median(durations),
        ping_interval_ms=(profile.get("ping_interval") or 0) * 1000 or None,
        article=_article(records, summaries),
        workloads=_workloads(main),
        model_fit=model_fit(main),
        drivers=drivers,
        driver_workloads=driver_workloads,
        extras=[CaseRow(c, explain(c)) for c in finding_cases(records)],
        rtt=rtt_series(run, records),
        pgbouncer=pgbouncer_facts(run, records),
        setups=setup_table(records),
        sweeps={case: [CaseRow(p, explain(p)) for p in points] for case, points in sorted(sweep_cases(records).items())},
    )
