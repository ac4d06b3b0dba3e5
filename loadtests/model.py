"""What throughput theory predicts for a scenario: Little's law over the resources it holds.

Little's law says a resource with N slots, each held for t seconds per request, can serve
at most N / t requests per second; the clients themselves, c of them each waiting W per
request, can offer at most c / W. The prediction is the smallest of these bounds:

    X = min(c / W, min over resources r of N_r / t_r)

where W is the scenario's uncontended latency (measured with one client) and t_r the part
of W a request holds r. Which resources a route holds depends on its style:

- ``async-blocking``: the event loop, 1 slot per worker, for all of W;
- ``sync``: an AnyIO threadpool token for all of W (and a pooled connection while querying);
- ``threadpool``: a token for step 1 only (W/2), then the async twin's connection;
- ``threadpool-only``: a token for each step, so W in all;
- ``async``: only its connection pool, if any; aiofiles also needs asyncio's default executor.

CPU is not in the model: a request's CPU time is only known after the run, so the harness
reports the server's CPU utilisation beside the prediction, and a miss at ~100% of a core
is explained as CPU-bound (the utilisation law) rather than hidden in the prediction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from app.catalogue import DRIVERS, STEPS, Executor, Scenario, Style
from loadtests.summary import CaseSummary


@dataclass(frozen=True)
class ServerShape:
    """The capacities of the server being measured, as /config reports them."""

    threadpool_tokens: int
    pool_max: dict[str, int]
    workers: int = 1
    cpu_count: int = 1

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ServerShape:
        return cls(
            threadpool_tokens=int(config["threadpool_tokens"]),
            pool_max={name: int(pool["max"]) for name, pool in config.get("pools", {}).items()},
            workers=int(config.get("workers", 1)),
            cpu_count=int(config.get("cpu_count") or 1),
        )

    @classmethod
    def declared(cls, threadpool_tokens: int, pool_max: int, workers: int = 1, cpu_count: int = 1) -> ServerShape:
        """The shape a profile asks for: every pooled driver of the catalogue with the same pool size."""
        pools = {driver.name: pool_max for driver in DRIVERS if driver.pooled}
        return cls(threadpool_tokens=threadpool_tokens, pool_max=pools, workers=workers, cpu_count=cpu_count)

    @property
    def default_executor_threads(self) -> int:
        # asyncio's default ThreadPoolExecutor, which aiofiles uses: min(32, cpu_count + 4).
        return min(32, self.cpu_count + 4)


@dataclass(frozen=True)
class Bound:
    """One resource's ceiling: ``slots`` held for ``hold_fraction`` of W each request."""

    resource: str
    slots: float
    hold_fraction: float

    def rps(self, latency_s: float) -> float:
        return self.slots / (self.hold_fraction * latency_s)


@dataclass(frozen=True)
class Prediction:
    rps: float
    bound: str
    capacity: float
    latency_ms: float
    bounds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bounds(scenario: Scenario, concurrency: int, shape: ServerShape) -> list[Bound]:
    """Every resource that limits ``scenario`` at ``concurrency`` clients, with its share of W."""
    workers = shape.workers
    found = [Bound("clients", concurrency, 1.0)]
    step = 1.0 / STEPS
    style = scenario.style
    if style is Style.ASYNC_BLOCKING:
        found.append(Bound("event loop", workers, 1.0))
    elif style is Style.SYNC:
        found.append(Bound("threadpool", shape.threadpool_tokens * workers, 1.0))
    elif style is Style.THREADPOOL:
        found.append(Bound("threadpool", shape.threadpool_tokens * workers, step))
    elif style is Style.THREADPOOL_ONLY:
        found.append(Bound("threadpool", shape.threadpool_tokens * workers, 1.0))
    if scenario.driver.executor is Executor.THREADPOOL:
        found.append(Bound("threadpool", shape.threadpool_tokens * workers, 1.0))
    if any(driver.executor is Executor.ASYNCIO for driver in scenario.drivers):
        share = step if scenario.twin else 1.0
        found.append(Bound("asyncio executor", shape.default_executor_threads * workers, share))
    for driver in scenario.drivers:
        if driver.pooled and driver.name in shape.pool_max:
            # A connection is held per step; the threadpool style spreads its two steps over two pools.
            share = step if scenario.twin else 1.0
            found.append(Bound(f"pool {driver.name}", shape.pool_max[driver.name] * workers, share))
    return found


def capacity(scenario: Scenario, concurrency: int, shape: ServerShape) -> float:
    """Requests ``scenario`` can have in service at once: the scarcest resource's slots over its share of W.

    With equal W, the ratio of two scenarios' capacities is the ratio of their throughputs that
    Little's law predicts; findings derive their thresholds from it.
    """
    return min(bound.slots / bound.hold_fraction for bound in bounds(scenario, concurrency, shape))


def predict(
    scenario: Scenario,
    concurrency: int,
    latency_s: float,
    shape: ServerShape,
) -> Prediction:
    """The Little's-law throughput of ``scenario``, given its uncontended latency ``latency_s``."""
    latency_s = max(latency_s, 1e-6)
    rates: dict[str, float] = {}
    for bound in bounds(scenario, concurrency, shape):
        rates[bound.resource] = min(bound.rps(latency_s), rates.get(bound.resource, math.inf))
    bound_name = min(rates, key=rates.__getitem__)
    rps = rates[bound_name]
    return Prediction(
        rps=rps,
        bound=bound_name,
        capacity=rps * latency_s,  # Little's law: requests in service at once, N = X * W
        latency_ms=latency_s * 1000,
        bounds=rates,
    )


#: Efficiency (measured / predicted) outside this band gets an explanation in the report.
LOW_EFFICIENCY, HIGH_EFFICIENCY = 0.5, 1.5
#: A server this busy (CPU seconds per wall second, per worker) is CPU-bound, whatever Little's law says.
CPU_BUSY = 0.85


def explain(case: CaseSummary) -> str:
    """Why a case is far from its prediction, or what went wrong with it ('' when nothing needs saying)."""
    notes = []
    if case.errors:
        notes.append(f"error in {len(case.errors)} of {case.repetitions} rounds: " + " ".join(case.errors[0].split())[:140])
    share = case.worst_error_share
    if case.failures and share is not None:
        tail = ": its throughput counts only the successful ones" if case.too_many_errors else ""
        notes.append(f"{case.failures} failed/non-2xx responses (up to {share:.1%} of a round){tail}")
    measured, cpu, bound = case.efficiency, case.cpu_utilisation, case.bound
    if measured is not None and measured < LOW_EFFICIENCY:
        if cpu is not None and cpu > CPU_BUSY:
            notes.append(f"CPU-bound: the server kept {cpu:.0%} of a core busy, so its {bound} bound is never reached")
        elif bound == "threadpool":
            notes.append(f"threadpool knee: {case.concurrency} clients queue for the threads, and each hand-off costs more than W shows")
        elif bound and bound.startswith("pool"):
            notes.append(f"pool knee: clients queue for the {bound.removeprefix('pool ')} pool's connections; "
                         "acquiring under contention costs more than W shows")
        elif bound == "event loop":
            notes.append("the blocked loop also delays accepting and answering, beyond the blocking call itself")
        else:
            notes.append(f"far below the {bound} bound: something the model does not count binds "
                         "(CPU, the GIL, Postgres, ab on the same cores)")
    elif measured is not None and measured > HIGH_EFFICIENCY:
        notes.append(f"faster than predicted: W, measured with one client and a new connection per request, "
                     f"overstates how long the {bound} is held")
    if case.outlier_rounds:
        notes.append("outlier round(s) " + ", ".join(str(r + 1) for r in case.outlier_rounds) + " (kept)")
    return "; ".join(notes)


def efficiency(measured_rps: float | None, predicted: Prediction) -> float | None:
    if not measured_rps or predicted.rps <= 0:
        return None
    return measured_rps / predicted.rps
