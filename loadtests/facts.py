"""What a report says, as data: built from a run folder, judged by ``findings`` and ``model``, laid out by templates.

Nothing here formats a number, and no template decides anything: the templates format, and
judgement lives here, in ``findings`` (verdicts), ``model`` (predictions and explanations),
``heldout`` (the model on points it never saw), ``choices`` (drivers, FastAPI's share, the pool)
and ``production`` (RTT, PgBouncer, workers). Every ratio a reader compares is paired
(``pairing.compare``); absolute rates are this machine's state at the time, and say so.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.catalogue import ARTICLE_CASES, WORKLOADS
from loadtests.choices import (
    FRAMEWORK_DIFFERENCE,
    DriverTable,
    FrameworkShare,
    PoolChoice,
    driver_table,
    framework_shares,
    pool_choices,
)
from loadtests.compare import ComparisonResult
from loadtests.findings import Verdict, required_failures, required_unsettled
from loadtests.heldout import TARGET_SHARE, HeldOut, Point, judge
from loadtests.legacy import WHOLE_RUN
from loadtests.model import CPU_BOUNDS, MODEL_BAND, ServerShape, bound_class, explain, explained_rps, in_band
from loadtests.pairing import Comparison, compare
from loadtests.production import Crossover as Crossover  # re-exported: the CLI prints the crossovers
from loadtests.production import PgBouncerFacts, RttSeries, SetupTable, pgbouncer_facts, setup_table
from loadtests.production import rtt_series as rtt_series  # re-exported with Crossover
from loadtests.results import Record, is_main, successful_rps
from loadtests.stability import wall_seconds
from loadtests.stats import median
from loadtests.summary import GENERATOR_BOUND, CaseSummary, finding_cases, main_cases, summarise, sweep_cases

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
#: A measured ratio to case 1 agrees with the model's when its centre is within this share of it.
ARTICLE_AGREEMENT = 0.10
#: The order reports present workloads and styles in.
WORKLOAD_ORDER = tuple(workload.name for workload in WORKLOADS)
STYLE_ORDER = ("sync", "async-blocking", "async", "threadpool", "threadpool-only", "minimal")
#: A sample during which the host took this much of a core from the machine (steal) is worth a look.
STEAL_NOTABLE_CORES = 0.1
#: Samples listed as the ones the host took most from.
STEAL_LISTED = 5


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
class FindingRow:
    """A verdict as the findings table shows it."""

    verdict: Verdict
    #: The finding's cases whose figure is their load generators' (bound: load generator), not the service's.
    generator_bound: tuple[str, ...] = ()

    @property
    def judged_apart(self) -> bool:
        """The verdict was taken on another interval than the 95% one shown (the run's Bonferroni level)."""
        v = self.verdict
        return v.judged is not None and v.ratio is not None and v.judged.confidence != v.ratio.confidence


def _finding_rows(verdicts: list[Verdict], records: list[Record] | None = None) -> list[FindingRow]:
    bound = {case.case for case in summarise(records or []) if case.bound == GENERATOR_BOUND}
    return [FindingRow(v, tuple(c for c in (v.finding.numerator, v.finding.denominator) if c in bound)) for v in verdicts]


@dataclass(frozen=True)
class ArticleSide:
    case: str
    summary: CaseSummary | None
    #: Over case 1, paired; None for case 1 itself.
    to_case_1: Comparison | None
    #: The ratio of the two cases' calibration predictions (steady state).
    model: float | None
    #: Case 1 itself, measured: its ratio to itself is 1 by definition.
    reference: bool
    #: The finding that judges this ratio, if any.
    verdict: Verdict | None

    @property
    def agrees(self) -> bool | None:
        """Whether the measured ratio's centre is within ``ARTICLE_AGREEMENT`` of the model's."""
        if self.reference or self.to_case_1 is None or not self.model:
            return None
        return abs(self.to_case_1.interval.center / self.model - 1) <= ARTICLE_AGREEMENT


@dataclass(frozen=True)
class ArticleRow:
    number: int
    style: str
    article_rps: float
    article_to_case_1: float
    wait: ArticleSide
    twin: ArticleSide


def _article(records: list[Record], summaries: dict[str, CaseSummary], verdicts: list[Verdict]) -> list[ArticleRow]:
    if not any(case in summaries for case in [*WAIT_CASES.values(), *PG_SLEEP_TWINS.values()]):
        return []
    main = [r for r in records if is_main(r)]
    judged = {(v.finding.numerator, v.finding.denominator): v for v in verdicts
              if not v.finding.concurrency and not v.finding.far}

    def side(case: str, base: str) -> ArticleSide:
        summary = summaries.get(case)
        if case == base:
            return ArticleSide(case, summary, None, 1.0 if summary else None, summary is not None, None)
        predicted = base_predicted = None
        if summary and base in summaries:
            predicted, base_predicted = summary.predicted_rps, summaries[base].predicted_rps
        return ArticleSide(case, summary, compare(main, case, base, successful_rps),
                           predicted / base_predicted if predicted and base_predicted else None, False,
                           judged.get((case, base)))

    return [
        ArticleRow(n, ARTICLE_STYLES[n], ARTICLE_RPS[n], ARTICLE_RPS[n] / ARTICLE_RPS[1],
                   side(WAIT_CASES[n], WAIT_CASES[1]), side(PG_SLEEP_TWINS[n], PG_SLEEP_TWINS[1]))
        for n in (1, 2, 3, 4)
    ]


@dataclass(frozen=True)
class StealSample:
    """One sample the host took CPU from: how much, and how far the sample's rate sat from its case's median."""

    case: str
    concurrency: int
    round: int
    #: CPU the host gave other guests per wall second of the window, in cores (steal per request x rate).
    cores: float
    ms_per_request: float
    #: The sample's rate over the median of its case's samples, less 1 (-0.2: 20% below).
    deviation: float | None


@dataclass(frozen=True)
class Steal:
    """Host steal over the run's samples."""

    samples: int  # samples with a steal reading
    median_cores: float | None
    max_cores: float | None
    notable: int  # samples at or above STEAL_NOTABLE_CORES
    worst: list[StealSample]
    notable_cores: float = STEAL_NOTABLE_CORES


@dataclass(frozen=True)
class Samples:
    """How the run's figures were counted and how long its samples lasted (medians over every sample)."""

    methods: dict[str, int]
    #: Every figure is a steady-state window (none is ab's whole run, start-up included).
    steady: bool
    #: Some figure is ab's whole run (the article profile's method, or a run from before steady windows).
    whole_run: bool
    warm_s: float | None
    window_s: float | None
    completions: float | None
    #: Wall time of one sample (ab started to ab stopped, plus its bookkeeping), median and longest.
    sample_s: float | None
    longest_s: float | None
    steal: Steal | None


def _steal(records: list[Record]) -> Steal | None:
    found: list[StealSample] = []
    for group in summarise(r for r in records if not r.get("error")):
        rates = [rate for r in group.records if (rate := successful_rps(r))]
        middle = median(rates)
        for record in group.records:
            steal, rate = (record.get("cpu") or {}).get("steal_s"), successful_rps(record)
            if steal is None or not rate:
                continue
            found.append(StealSample(record["case"], int(record.get("concurrency") or 0), int(record.get("round", 0)),
                                     steal * rate, steal * 1000, rate / middle - 1 if middle else None))
    if not found:
        return None
    cores = [s.cores for s in found]
    worst = sorted((s for s in found if s.cores > 0), key=lambda s: -s.cores)[:STEAL_LISTED]
    return Steal(len(found), median(cores), max(cores), sum(1 for c in cores if c >= STEAL_NOTABLE_CORES), worst)


def samples(records: list[Record]) -> Samples:
    measured = [r for r in records if not r.get("error")]
    methods = Counter(str(r["method"]) for r in measured if r.get("method"))
    completions = median([float(n) for r in measured if (n := (r.get("steady") or {}).get("completions"))])
    return Samples(
        methods=dict(methods),
        steady=bool(methods) and WHOLE_RUN not in methods,
        whole_run=WHOLE_RUN in methods,
        warm_s=median([w for r in measured if (w := r.get("warm_s")) is not None and r.get("method") != WHOLE_RUN]),
        window_s=median([w for r in measured if (w := r.get("window_s")) and r.get("method") != WHOLE_RUN]),
        completions=completions,
        sample_s=median([d for r in measured if (d := r.get("duration_s"))]),
        longest_s=max((d for r in measured if (d := r.get("duration_s"))), default=None),
        steal=_steal(measured),
    )


@dataclass(frozen=True)
class Fit:
    """One case against what the model expected of it, by the class of its bound (``model.bound_class``).

    predicted: the calibration's prediction (Little's law, before the rounds). explained: the utilisation
    law on the CPU per request the run itself spent (an account of a CPU-saturated case, not a forecast)."""

    case: CaseSummary
    kind: str | None
    expected: float | None
    bound: str | None
    note: str
    #: For an explained case: the tightest bound of Little's law in the calibration's prediction (what binds when
    #: the CPU does not), as (resource, rate).
    other_bound: tuple[str, float] | None = None

    @property
    def measured(self) -> float | None:
        return self.case.rps.center if self.case.rps else None

    @property
    def ratio(self) -> float | None:
        measured = self.measured
        return measured / self.expected if measured and self.expected else None

    @property
    def hit(self) -> bool | None:
        return in_band(self.ratio)

    @property
    def below(self) -> bool:
        """Measured under what was expected (for an explained case: the CPU part was not saturated)."""
        return self.ratio is not None and self.ratio < 1


@dataclass(frozen=True)
class ClassFit:
    kind: str
    fits: list[Fit]

    @property
    def judged(self) -> list[Fit]:
        return [f for f in self.fits if f.hit is not None]

    @property
    def hits(self) -> int:
        return sum(1 for f in self.judged if f.hit)

    @property
    def misses(self) -> list[Fit]:
        return [f for f in self.judged if not f.hit]


@dataclass(frozen=True)
class ModelFit:
    """The model's fit per bound class; ``within``, ``total`` and ``misses`` over both."""

    classes: list[ClassFit]
    band: float = MODEL_BAND

    @property
    def within(self) -> int:
        return sum(c.hits for c in self.classes)

    @property
    def total(self) -> int:
        return sum(len(c.judged) for c in self.classes)

    @property
    def misses(self) -> list[Fit]:
        return [f for c in self.classes for f in c.misses]


def _spent(case: CaseSummary) -> dict[str, float | None]:
    """The CPU per request each part spent in the case's rounds (seconds, median over the rounds)."""
    parts = ("service_s", "postgres_s", "client_s", "proxy_s", "pgbouncer_s")
    return {part: median([v for r in case.records if (v := (r.get("cpu") or {}).get(part)) is not None]) for part in parts}


def _shape(case: CaseSummary, run: dict[str, Any]) -> ServerShape | None:
    servers = run.get("servers") or []
    index = int(case.records[0].get("server") or 0)
    try:
        return ServerShape.from_config(servers[index]) if index < len(servers) else None
    except (KeyError, TypeError, ValueError):
        return None


def _other_bound(case: CaseSummary) -> tuple[str, float] | None:
    """The calibration's tightest bound that is not CPU (median over the case's records)."""
    rates: dict[str, list[float]] = {}
    for record in case.records:
        for name, rate in ((record.get("model") or {}).get("bounds") or {}).items():
            if name not in CPU_BOUNDS and rate:
                rates.setdefault(name, []).append(float(rate))
    found = {name: value for name, values in rates.items() if (value := median(values)) is not None}
    return min(found.items(), key=lambda item: item[1]) if found else None


def fit(case: CaseSummary, run: dict[str, Any]) -> Fit:
    kind = bound_class(case.bound)
    if kind == "explained":
        shape = _shape(case, run)
        generators = case.generators
        found = explained_rps(_spent(case), shape, generators.count if generators else 1) if shape else None
        expected, bound = found if found else (None, None)
        return Fit(case, kind, expected, bound, explain(case), _other_bound(case))
    return Fit(case, kind, case.predicted_rps, case.bound, explain(case))


def model_fit(cases: list[CaseSummary], run: dict[str, Any] | None = None) -> ModelFit:
    """Every case in its bound class; without ``run`` (its servers' shapes) the explained class is not judged."""
    fits = [fit(case, run or {}) for case in cases]
    return ModelFit([ClassFit(kind, [f for f in fits if f.kind == kind]) for kind in ("predicted", "explained")])


@dataclass(frozen=True)
class SweepRow:
    """A sweep point and the held-out model's prediction for it."""

    case: CaseSummary
    point: Point | None
    note: str


def _sweeps(records: list[Record], held: HeldOut | None) -> dict[str, list[SweepRow]]:
    points = {(p.case, p.concurrency): p for p in held.points} if held else {}
    return {case: [SweepRow(s, points.get((case, s.concurrency)), explain(s)) for s in found]
            for case, found in sorted(sweep_cases(records).items())}


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
    findings: list[FindingRow]
    failed: list[Verdict]
    unsettled: list[Verdict]
    shape_warnings: list[str]
    measurements: int
    sweep_points: int
    rounds: int
    #: Rounds of the pairs a reader ranks drivers on (the profile's ``ranked_repeat``; 0: the same as ``rounds``).
    ranked_rounds: int
    #: The ×/÷ spread a ranked pair's interval is narrowed to (exp of the profile's ``ranked_half_width``).
    ranked_spread: float
    #: The most rounds a required finding's case was measured in (more than ``rounds`` after extra looks).
    max_rounds: int
    #: The run's wall time, start to finish (None while it runs, or when run.json lacks either end).
    seconds: float | None
    samples: Samples
    ping_interval_ms: float | None
    article: list[ArticleRow]
    workloads: list[WorkloadTable]
    model_fit: ModelFit
    heldout: HeldOut | None
    drivers: DriverTable | None
    framework: list[FrameworkShare]
    framework_difference: str
    pools: list[PoolChoice]
    extras: list[CaseRow]
    rtt: RttSeries | None
    pgbouncer: PgBouncerFacts | None
    setups: SetupTable | None
    sweeps: dict[str, list[SweepRow]]
    #: What made the load (run.json's ``load``: engine, generators asked for) and, per case, its generators.
    load: dict[str, Any] = field(default_factory=dict)
    generators: list[CaseSummary] = field(default_factory=list)
    #: The share of sweep points the held-out test asks the model to predict.
    target_share: float = TARGET_SHARE
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


def build(run: dict[str, Any], records: list[Record], verdicts: list[Verdict]) -> Facts:
    """The facts of one run folder's report (plots and comparison are added by the caller)."""
    profile = run.get("profile") or {}
    servers = run.get("servers") or []
    main = main_cases(records)
    summaries = {case.case: case for case in main}
    held = judge(records, run)
    return Facts(
        run=run,
        profile=profile,
        environment=run.get("environment") or {},
        server=servers[0] if servers else {},
        partial=partial_note(run, records),
        verdicts=verdicts,
        findings=_finding_rows(verdicts, records),
        failed=required_failures(verdicts),
        unsettled=required_unsettled(verdicts),
        shape_warnings=shape_warnings(run),
        measurements=len(records),
        sweep_points=sum(1 for r in records if r.get("sweep")),
        rounds=int(profile.get("repeat") or 1),
        ranked_rounds=int(profile.get("ranked_repeat") or 0),
        ranked_spread=math.exp(float(profile.get("ranked_half_width") or 0.0)),
        max_rounds=max((v.rounds for v in verdicts if v.finding.required), default=0),
        seconds=wall_seconds(run),
        samples=samples(records),
        ping_interval_ms=(profile.get("ping_interval") or 0) * 1000 or None,
        article=_article(records, summaries, verdicts),
        workloads=_workloads(main),
        model_fit=model_fit(main, run),
        heldout=held,
        drivers=driver_table(records, summaries, run),
        framework=framework_shares(records, summaries),
        framework_difference=FRAMEWORK_DIFFERENCE,
        pools=pool_choices(records, summaries, run),
        extras=[CaseRow(c, explain(c)) for c in finding_cases(records)],
        rtt=rtt_series(run, records),
        pgbouncer=pgbouncer_facts(run, records),
        setups=setup_table(records),
        sweeps=_sweeps(records, held),
        load=run.get("load") or {},
        generators=[case for case in summarise(records) if case.generators is not None],
    )
