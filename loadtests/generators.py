"""More load than one ab core: several ab processes splitting c, and what each generator's CPU was.

ab is single-threaded, so one ab offers at most one core of load. ``AbGroup`` starts N ab processes
together against the same route, c split between them (c = 40 over 3: 14, 13, 13), and stops them
together. Their rate is never read from ab: the sample counts the service's completion log over its
window (``sample.steady_sample``), where N generators sum by themselves.

What ab reports per process is merged without averaging anything: counts and failures are summed,
and the latency percentiles are those of the pooled per-request times of every process (ab's ``-g``
file, whole milliseconds). One process keeps ab's own ``-e`` percentiles, with their fractions.

``generator_count`` is ``--generators auto``: enough processes to keep each under ``AUTO_SHARE``
of a core, from the CPU one ab spent per request in the calibration and the rate the case is
expected to reach.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from loadtests.ab import AbResult, AbRun
from loadtests.environment import cpu_seconds, runnable_seconds
from loadtests.steady import parse_gnuplot

#: ``--generators auto`` keeps each generator under this share of a core.
AUTO_SHARE = 0.7
#: A generator that asked for this share of a core over a window (ran on it, or waited on a runqueue for it) was the
#: bottleneck: it never waited for an answer, so the figure is its, not the service's.
GENERATOR_BUSY = 0.9
#: ``--generators auto`` never starts more processes than this many per core of the machine.
AUTO_MAX_PER_CORE = 1


class Load(Protocol):
    """The load of one sample: started, measured on its processes' CPU, stopped with a report."""

    started_ns: float
    started_epoch: float
    stopped_epoch: float

    def start(self) -> Load: ...

    @property
    def pids(self) -> list[int]: ...

    @property
    def finished(self) -> bool: ...

    def stop(self) -> AbResult: ...

    def gnuplot_text(self) -> str: ...

    def generator_cpu(self) -> list[float | None] | None:
        """CPU seconds each generator used so far (None for one this machine cannot read; None when not known here)."""
        ...

    def generator_demand(self) -> list[float | None] | None:
        """Seconds each generator ran or waited for a core so far (``environment.runnable_seconds``), as above."""
        ...

    def describe(self) -> dict[str, Any]: ...

    def __enter__(self) -> Load: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...


def split(concurrency: int, generators: int) -> list[int]:
    """``concurrency`` clients over ``generators`` processes, as evenly as whole clients allow (none empty)."""
    if generators < 1 or concurrency < generators:
        raise ValueError(f"{generators} generators need at least as many clients, got c = {concurrency}")
    base, extra = divmod(concurrency, generators)
    return [base + (1 if index < extra else 0) for index in range(generators)]


def generator_count(concurrency: int, expected_rps: float, client_s: float | None, cores: int | None = None) -> int:
    """``--generators auto``: processes enough for ``expected_rps`` at ``client_s`` CPU seconds per request with each
    under ``AUTO_SHARE`` of a core, at most one per core (``cores``, default the machine's) and one per client."""
    if not client_s or expected_rps <= 0:
        return 1
    wanted = math.ceil(expected_rps * client_s / AUTO_SHARE)
    limit = max(1, (cores or os.cpu_count() or 1) * AUTO_MAX_PER_CORE)
    return max(1, min(wanted, limit, concurrency))


def pooled_percentiles(times_ms: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of the pooled per-request times (NaN without any)."""
    if not times_ms:
        return {"p50_ms": math.nan, "p90_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    values = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = (float(np.percentile(values, q, method="inverted_cdf")) for q in (50, 90, 99))
    return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": float(values.max())}


def merge_results(results: Sequence[AbResult], times_ms: Sequence[float] | None) -> AbResult:
    """One report for several ab processes run side by side: counts summed, rates summed, mean over every request,
    percentiles from ``times_ms`` (every process's requests pooled). One result is returned as it is."""
    if len(results) == 1:
        return results[0]
    complete = sum(r.complete for r in results)
    successful = sum(r.successful for r in results)
    total_s = max(r.total_seconds for r in results)
    weighted = [(r.mean_ms, r.complete) for r in results if not math.isnan(r.mean_ms) and r.complete]
    mean = sum(m * n for m, n in weighted) / sum(n for _, n in weighted) if weighted else math.nan
    pooled = pooled_percentiles(times_ms or [])
    return replace(
        results[0],
        complete=complete,
        failed=sum(r.failed for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        failed_connect=sum(r.failed_connect for r in results),
        failed_receive=sum(r.failed_receive for r in results),
        failed_length=sum(r.failed_length for r in results),
        failed_exceptions=sum(r.failed_exceptions for r in results),
        requests_per_second=sum(r.requests_per_second for r in results if not math.isnan(r.requests_per_second)),
        successful=successful,
        successful_per_second=successful / total_s if total_s > 0 else math.nan,
        total_seconds=total_s,
        mean_ms=mean,
        concurrency=sum(r.concurrency for r in results),
        requests=sum(r.requests for r in results),
        p50_ms=pooled["p50_ms"], p90_ms=pooled["p90_ms"], p99_ms=pooled["p99_ms"], max_ms=pooled["max_ms"],
    )


@dataclass(frozen=True)
class GeneratorUse:
    """The generators of one sample: the engine, how many, and each one's CPU over the window in cores, and what each
    asked of the cores (CPU plus the time it waited on a runqueue: on cores shared with the service, a generator can
    be the bottleneck without getting a whole core)."""

    engine: str
    count: int
    cpu: tuple[float | None, ...]
    #: How their latencies were merged (one process: its own percentiles).
    latency: str
    demand: tuple[float | None, ...] = ()

    @property
    def busiest(self) -> float | None:
        """The largest share of a core a generator asked for (its CPU where its runqueue wait is unknown)."""
        known = [d if d is not None else c for c, d in zip(self.cpu, self.demand or self.cpu, strict=False)]
        values = [v for v in known if v is not None]
        return max(values) if values else None

    @property
    def saturated(self) -> bool | None:
        """Whether a generator was the bottleneck (None when no generator's CPU could be read)."""
        busiest = self.busiest
        return None if busiest is None else busiest >= GENERATOR_BUSY

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "count": self.count, "cpu": list(self.cpu), "demand": list(self.demand),
                "latency": self.latency, "saturated": self.saturated}


def _per_second(before: list[float | None] | None, after: list[float | None] | None, seconds: float,
                count: int) -> tuple[float | None, ...] | None:
    if before is None or after is None or seconds <= 0:
        return None
    return tuple((b2 - b1) / seconds if b1 is not None and b2 is not None else None
                 for b1, b2 in zip(before, after, strict=False))[:count]


def window_use(load: Load, before: list[float | None] | None, after: list[float | None] | None, seconds: float,
               demand_before: list[float | None] | None = None, demand_after: list[float | None] | None = None) -> GeneratorUse:
    """Each generator's CPU (and demand) in cores over a window of ``seconds``, from two readings of each."""
    info = load.describe()
    count = int(info["count"])
    # Generators this machine cannot read: what the engine itself reported, if anything.
    cpu = _per_second(before, after, seconds, count) or tuple(info.get("cpu") or (None,) * count)
    demand = _per_second(demand_before, demand_after, seconds, count) or ()
    return GeneratorUse(str(info["engine"]), count, cpu, str(info["latency"]), demand)


class AbGroup:
    """N ab processes against one URL, c split between them, started and stopped together (``AbRun`` each)."""

    def __init__(self, url: str, requests: int, concurrency: int, generators: int, *, keepalive: bool = False,
                 timeout_s: float = 30, gnuplot: bool = False) -> None:
        shares = split(concurrency, generators)
        # Several processes pool their per-request times from -g, so each keeps its file.
        pooled = gnuplot or generators > 1
        self.runs = [AbRun(url, max(share, math.ceil(requests * share / concurrency)), share, keepalive=keepalive,
                           timeout_s=timeout_s, gnuplot=pooled) for share in shares]
        self.started_ns = 0.0
        self.started_epoch = self.stopped_epoch = 0.0

    def start(self) -> AbGroup:
        for run in self.runs:
            run.start()
        self.started_ns = min(run.started_ns for run in self.runs)
        self.started_epoch = min(run.started_epoch for run in self.runs)
        return self

    @property
    def pids(self) -> list[int]:
        return [pid for run in self.runs if (pid := run.pid) is not None]

    @property
    def finished(self) -> bool:
        return any(run.finished for run in self.runs)

    def generator_cpu(self) -> list[float | None]:
        return [cpu_seconds(pid, children=False) for pid in self.pids]

    def generator_demand(self) -> list[float | None]:
        return [runnable_seconds(pid) for pid in self.pids]

    def stop(self) -> AbResult:
        results = [run.stop() for run in self.runs]
        self.stopped_epoch = min(run.stopped_epoch for run in self.runs)
        if len(results) == 1:
            return results[0]
        return merge_results(results, [float(total) for run in self.runs for _, total in parse_gnuplot(run.gnuplot_text())])

    def gnuplot_text(self) -> str:
        return "".join(run.gnuplot_text() for run in self.runs)

    def describe(self) -> dict[str, Any]:
        latency = "ab's own percentiles" if len(self.runs) == 1 else \
            f"pooled per-request times of the {len(self.runs)} processes (ab -g, whole ms)"
        return {"engine": "ab", "count": len(self.runs), "latency": latency}

    def __enter__(self) -> AbGroup:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for run in self.runs:
            run.__exit__(exc_type, exc, tb)


__all__ = ["AUTO_SHARE", "GENERATOR_BUSY", "AbGroup", "GeneratorUse", "Load", "generator_count", "merge_results",
           "pooled_percentiles", "split", "window_use"]
