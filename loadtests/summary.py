"""The repetitions of each case, summarised: medians and 95% intervals, errors, the model's prediction.

Reports, plots, comparisons and the README's results all read a run through these summaries,
so a number means the same thing wherever it appears.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from loadtests.results import MAX_ERROR_SHARE, Record, error_share, is_main, ping_count, predicted_rps, successful_rps
from loadtests.stats import Interval, interval, median, outliers
from loadtests.work import WirePerRequest


def _ab(field: str) -> Callable[[Record], float | None]:
    def value(record: Record) -> float | None:
        found = (record.get("ab") or {}).get(field)
        return found if found is not None and found > 0 and not record.get("error") else None
    return value


def _ping(field: Literal["p50_ms", "p90_ms"]) -> Callable[[Record], float | None]:
    def value(record: Record) -> float | None:
        ping = record.get("ping")
        found = ping.get(field) if ping else None
        return found if isinstance(found, int | float) and found > 0 else None
    return value


def values(records: Iterable[Record], get: Callable[[Record], float | None]) -> list[float]:
    return [v for v in (get(r) for r in records) if v is not None]


#: The bound a case gets when its load generators, not the service, were the bottleneck (``generators.GENERATOR_BUSY``).
GENERATOR_BOUND = "load generator"


@dataclass(frozen=True)
class GeneratorSummary:
    """The load generators of a case's rounds: engine, how many, each one's CPU in cores (median over the rounds)."""

    engine: str
    count: int
    cpu: tuple[float | None, ...]
    latency: str | None
    #: Rounds in which the busiest generator asked for GENERATOR_BUSY of a core, of the rounds whose CPU was read.
    saturated_rounds: int
    judged_rounds: int
    #: What each asked of the cores (CPU plus runqueue wait), in cores (median over the rounds); empty when not read.
    demand: tuple[float | None, ...] = ()

    @property
    def busiest(self) -> float | None:
        values = [v for v in (self.demand if any(d is not None for d in self.demand) else self.cpu) if v is not None]
        return max(values) if values else None

    @property
    def saturated(self) -> bool:
        """The generators were the bottleneck in at least half the rounds: the figure is theirs, not the service's."""
        return self.judged_rounds > 0 and 2 * self.saturated_rounds >= self.judged_rounds


ping_p50 = _ping("p50_ms")
ping_p90 = _ping("p90_ms")


@dataclass(frozen=True)
class CaseSummary:
    """Every repetition of one case at one concurrency."""

    case: str
    concurrency: int
    sweep: bool
    for_finding: str | None
    records: tuple[Record, ...]

    def _first(self, field: str) -> Any:
        return self.records[0].get(field)

    @property
    def workload(self) -> str:
        return str(self._first("workload") or "other")

    @property
    def style(self) -> str:
        return str(self._first("style") or "-")

    @property
    def driver(self) -> str:
        twin = self._first("twin")
        return f"{self._first('driver')} + {twin}" if twin else str(self._first("driver"))

    @property
    def via(self) -> str:
        return str(self._first("via") or "direct")

    @property
    def workers(self) -> int:
        return int(self._first("workers") or 1)

    @property
    def setup(self) -> str:
        """Where and how the server ran, in words: RTT, PgBouncer, workers."""
        return f"{self.rtt_ms:g} ms" + (" + PgBouncer" if self.via == "pgbouncer" else "") \
            + (f", {self.workers} workers" if self.workers > 1 else "")

    @property
    def backends(self) -> int | None:
        """Postgres server connections the service held at the end of a run (median over the rounds)."""
        found = median([n for r in self.records if (n := (r.get("cpu") or {}).get("backends")) is not None])
        return round(found) if found is not None else None

    @property
    def pgbouncer_server_connections(self) -> int | None:
        found = median([n for r in self.records if (n := (r.get("pgbouncer") or {}).get("server_connections")) is not None])
        return round(found) if found is not None else None

    @property
    def rtt_ms(self) -> float:
        return float(self._first("rtt_ms") or 0.0)

    @property
    def repetitions(self) -> int:
        return len(self.records)

    @property
    def rps(self) -> Interval | None:
        """Successful responses per second: geometric mean and 95% interval over the repetitions."""
        return interval(values(self.records, successful_rps))

    @property
    def rps_median(self) -> float | None:
        return median(values(self.records, successful_rps))

    def latency(self, field: str) -> Interval | None:
        """ab's ``mean_ms``, ``p50_ms`` or ``p99_ms`` over the repetitions."""
        return interval(values(self.records, _ab(field)))

    @property
    def ping_p50(self) -> Interval | None:
        return interval(values(self.records, ping_p50))

    @property
    def ping_p90(self) -> Interval | None:
        return interval(values(self.records, ping_p90))

    @property
    def ping_samples(self) -> int:
        return sum(ping_count(r) for r in self.records)

    @property
    def predicted_rps(self) -> float | None:
        return median(values(self.records, predicted_rps))

    @property
    def generators(self) -> GeneratorSummary | None:
        used = [g for r in self.records if (g := r.get("generators")) and not r.get("error")]
        if not used:
            return None
        count = max(int(g.get("count") or 1) for g in used)
        cpu = tuple(median([c[i] for g in used if i < len(c := g.get("cpu") or []) and c[i] is not None])
                    for i in range(count))
        demand = tuple(median([d[i] for g in used if i < len(d := g.get("demand") or []) and d[i] is not None])
                       for i in range(count))
        judged = [bool(g["saturated"]) for g in used if g.get("saturated") is not None]
        return GeneratorSummary(str(used[0].get("engine") or "ab"), count, cpu, used[0].get("latency"), sum(judged),
                                len(judged), demand if any(d is not None for d in demand) else ())

    @property
    def model_bound(self) -> str | None:
        """The bound the calibration's model named, before the rounds."""
        bounds = [(r.get("model") or {}).get("bound") for r in self.records]
        return next((b for b in bounds if b), None)

    @property
    def bound(self) -> str | None:
        """What limited the case: the load generators where they were saturated (whatever the model said), else the
        model's bound."""
        generators = self.generators
        return GENERATOR_BOUND if generators is not None and generators.saturated else self.model_bound

    @property
    def capacity(self) -> float | None:
        return median([c for r in self.records if (c := (r.get("model") or {}).get("capacity"))])

    @property
    def efficiency(self) -> float | None:
        measured, predicted = self.rps, self.predicted_rps
        return measured.center / predicted if measured and predicted else None

    @property
    def uncontended_ms(self) -> float | None:
        return median([w for r in self.records if (w := r.get("uncontended_ms"))])

    @property
    def cpu_utilisation(self) -> float | None:
        return median([u for r in self.records if (u := r.get("cpu_utilisation")) is not None])

    def calibration_cpu_ms(self, part: str) -> float | None:
        """CPU ms per request of ``part`` during the warm-ups (what the prediction used), median over the rounds."""
        return median([v * 1000 for r in self.records if (v := (r.get("calibration_cpu") or {}).get(part)) is not None])

    def cpu_ms(self, part: str) -> float | None:
        """CPU ms per request of ``part`` (``service_s``, ``postgres_s`` or ``client_s``) during the runs (median)."""
        return median([v * 1000 for r in self.records if (v := (r.get("cpu") or {}).get(part)) is not None])

    def _sessions(self, field: str) -> int | None:
        counts = [n for r in self.records if (n := (r.get("cpu") or {}).get(field)) is not None]
        return sum(counts) if counts else None

    @property
    def new_sessions(self) -> int | None:
        """Postgres sessions the service opened during the measured runs, all rounds together."""
        return self._sessions("new_sessions")

    @property
    def closed_sessions(self) -> int | None:
        """Postgres sessions that ended during the measured runs: connections closed and reopened (churn)."""
        return self._sessions("closed_sessions")

    @property
    def wire(self) -> WirePerRequest | None:
        """Round trips, statements, Parses and sessions per request, counted once through the wire proxy."""
        return next((w for r in self.records if (w := r.get("wire"))), None)

    @property
    def server_ms(self) -> float | None:
        return median([v for r in self.records if (v := r.get("server_ms"))])

    @property
    def worst_error_share(self) -> float | None:
        shares = [s for r in self.records if (s := error_share(r)) is not None]
        return max(shares, default=None)

    @property
    def failures(self) -> int | None:
        counts = [int(ab.get("failed") or 0) + int(ab.get("non_2xx") or 0) for r in self.records if (ab := r.get("ab"))]
        return sum(counts) if counts else None

    @property
    def too_many_errors(self) -> bool:
        share = self.worst_error_share
        return share is not None and share > MAX_ERROR_SHARE

    @property
    def errors(self) -> list[str]:
        return [str(r["error"]) for r in self.records if r.get("error")]

    @property
    def outlier_rounds(self) -> list[int]:
        """Rounds whose throughput sits far from the others' (flagged, never dropped). A case measured several
        times in a round (a reference beside each case it is compared with) counts once per round and block."""
        by_round: dict[tuple[str, int], list[float]] = {}
        for record in self.records:
            if rps := successful_rps(record):
                by_round.setdefault((str(record.get("block") or ""), int(record.get("round", 0))), []).append(rps)
        keys = sorted(by_round)
        means = [float(np.exp(np.mean(np.log(by_round[key])))) for key in keys]
        return sorted({keys[i][1] for i in outliers(means)})

    @property
    def sample_seconds(self) -> float | None:
        """How long one sample's steady window lasted (median over the repetitions)."""
        return median([w for r in self.records if (w := r.get("window_s"))])

    @property
    def warm_seconds(self) -> float | None:
        """The warm-up discarded before each window (median over the repetitions)."""
        return median([w for r in self.records if (w := r.get("warm_s")) is not None])

    @property
    def completions(self) -> int | None:
        """Successful completions counted per window (median over the repetitions)."""
        found = median([float(n) for r in self.records if (n := (r.get("steady") or {}).get("completions"))])
        return round(found) if found is not None else None

    @property
    def method(self) -> str | None:
        """How the rate was counted (``results.Record.method``)."""
        return next((str(m) for r in self.records if (m := r.get("method"))), None)


def summarise(records: Iterable[Record]) -> list[CaseSummary]:
    """One summary per (case, concurrency, sweep, RTT), in the order each was first measured."""
    groups: dict[tuple[str, int, bool, float, str, int], list[Record]] = {}
    for record in records:
        key = (record["case"], int(record.get("concurrency") or 0), bool(record.get("sweep")),
               float(record.get("rtt_ms") or 0), str(record.get("via") or "direct"), int(record.get("workers") or 1))
        groups.setdefault(key, []).append(record)
    return [CaseSummary(case, c, sweep, group[0].get("for_finding"), tuple(group))
            for (case, c, sweep, *_), group in groups.items()]


def rtt_cases(records: Iterable[Record]) -> dict[str, list[CaseSummary]]:
    """Cases measured at several RTTs (the main ones and their variants), by case, sorted by RTT."""
    by_case: dict[str, list[CaseSummary]] = {}
    base_workers = min((int(r.get("workers") or 1) for r in records if not r.get("variant")), default=1)
    for summary in summarise(r for r in records if not r.get("sweep") and not r.get("for_finding")
                             and (r.get("via") or "direct") == "direct" and int(r.get("workers") or 1) == base_workers):
        by_case.setdefault(summary.case, []).append(summary)
    return {case: sorted(points, key=lambda s: s.rtt_ms) for case, points in by_case.items() if len(points) > 1}


def main_cases(records: Iterable[Record]) -> list[CaseSummary]:
    """Cases at the profile's concurrency (``results.is_main``)."""
    return summarise(r for r in records if is_main(r))


def finding_cases(records: Iterable[Record]) -> list[CaseSummary]:
    """Cases measured again at a finding's own concurrency."""
    return summarise(r for r in records if not r.get("sweep") and r.get("for_finding"))


def sweep_cases(records: Iterable[Record]) -> dict[str, list[CaseSummary]]:
    """Sweep points by case, each sorted by concurrency."""
    by_case: dict[str, list[CaseSummary]] = {}
    for summary in summarise(r for r in records if r.get("sweep")):
        by_case.setdefault(summary.case, []).append(summary)
    return {case: sorted(points, key=lambda s: s.concurrency) for case, points in by_case.items()}
