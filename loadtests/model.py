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

from app.catalogue import STEPS, Scenario, Style


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
    if scenario.driver.name == "anyio":
        found.append(Bound("threadpool", shape.threadpool_tokens * workers, 1.0))
    if scenario.driver.name == "aiofiles" or (scenario.twin and scenario.twin.name == "aiofiles"):
        share = step if scenario.twin else 1.0
        found.append(Bound("asyncio executor", shape.default_executor_threads * workers, share))
    for driver in scenario.drivers:
        if driver.pooled and driver.name in shape.pool_max:
            # A connection is held per step; the threadpool style spreads its two steps over two pools.
            share = step if scenario.twin else 1.0
            found.append(Bound(f"pool {driver.name}", shape.pool_max[driver.name] * workers, share))
    return found


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


def efficiency(measured_rps: float | None, predicted: Prediction) -> float | None:
    if not measured_rps or predicted.rps <= 0:
        return None
    return measured_rps / predicted.rps
