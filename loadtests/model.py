"""What throughput theory predicts for a scenario: Little's law over what it holds, and the utilisation law over CPU.

Little's law says a resource with N slots, each held for t seconds per request, can serve
at most N / t requests per second; the clients themselves, c of them each waiting W per
request, can offer at most c / W. The utilisation law says the same of CPU: a part that
spends D seconds of CPU per request on K cores serves at most K / D. The prediction is the
smallest of these bounds, and the bound that gives it names the bottleneck:

    X = min(c / W, min over resources r of N_r / t_r, min over CPU parts p of K_p / D_p)

W is the uncontended latency as one client sees it. A resource is held for the server's
share of it, S (the app's own Server-Timing: W minus connecting and the client's work), so
t_r is the part of S a request holds r. Which resources a route holds depends on its style:

- ``async-blocking``: the event loop, 1 slot per worker, for all of S (nothing else runs meanwhile)
  and for the CPU the loop spends on the request outside S (``predict``);
- ``sync``: an AnyIO threadpool token for all of S (and a pooled connection while querying);
- ``threadpool``: a token for step 1 only (S/2), then the async twin's connection;
- ``threadpool-only``: a token for each step, so S in all;
- ``async``: only its connection pool, if any; aiofiles also needs asyncio's default executor.

The CPU parts, with D measured per request (``work.CpuMeter``, nanosecond clocks): the
service (one core per uvicorn worker: the GIL), the Postgres backends (all cores), ab (one
core: it is single-threaded), and all three together on the machine's cores, which they share.

Two kinds of figure come out, and a report keeps them apart (``bound_class``):

- **predicted**: the bound is Little's law over threads, connections, the event loop or the
  clients. W and S come from the calibration (one client, before and apart from the measured
  runs), so the measured rate is a genuine test of the prediction;
- **explained**: the bound is CPU. Throughput is then cores / CPU per request, and the CPU a
  request costs under load differs from what one client costs; the rate is explained by the
  CPU the run itself spent (``explained_rps``), which is an account, not a forecast. The
  held-out test (``heldout``) turns it into one: the CPU per request measured at the profile's
  concurrency must predict the sweep's other concurrencies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from app.catalogue import DRIVERS, STEPS, Executor, Kind, Scenario, Style
from loadtests.summary import GENERATOR_BOUND, CaseSummary
from loadtests.work import CpuPerRequest


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
    #: Requests the binding resource serves at once (threads, connections, clients); None for a CPU bound.
    slots: float | None = None
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
    elif style is Style.SYNC or (style is Style.MINIMAL and scenario.driver.kind is Kind.SYNC):
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


def cpu_bounds(cpu: CpuPerRequest, shape: ServerShape, generators: int = 1) -> dict[str, float]:
    """The utilisation law for each part that spends CPU on a request, and for the cores they share.

    ``client_s`` is what all the load generators spent per request; each is one core (ab is single-threaded, a
    Locust worker one Python process), so ``generators`` of them give that many cores."""
    rates = {}
    if cpu.service_s:
        rates["service CPU"] = shape.workers / cpu.service_s
    if cpu.postgres_s:
        rates["Postgres CPU"] = shape.cpu_count / cpu.postgres_s
    if cpu.client_s:
        rates["ab CPU"] = generators / cpu.client_s
    if cpu.proxy_s:
        rates["wire proxy CPU"] = 1 / cpu.proxy_s  # one asyncio process: one core
    if cpu.pgbouncer_s:
        rates["PgBouncer CPU"] = 1 / cpu.pgbouncer_s  # single-threaded: one core
    if cpu.total_s:
        rates["shared cores"] = shape.cpu_count / cpu.total_s
    return rates


def predict(
    scenario: Scenario,
    concurrency: int,
    latency_s: float,
    shape: ServerShape,
    *,
    hold_s: float | None = None,
    cpu: CpuPerRequest | None = None,
    loop_cpu_s: float | None = None,
    generators: int = 1,
) -> Prediction:
    """The throughput of ``scenario``: its uncontended latency ``latency_s`` (W) bounds the clients,
    the server's share ``hold_s`` (S, default W) the resources, and ``cpu`` (per request) the CPU.

    The event loop is held for S and, besides, for the CPU it spends on the request outside the
    app (HTTP in and out, accepting): the service's CPU per request less ``loop_cpu_s``, the loop's
    CPU within S (Server-Timing ``loop``). Nothing else runs while a blocking call holds it, so an
    ``async-blocking`` route gets the loop for S plus that share, not for S alone. ``generators`` load generators
    (ab processes) give the client ``generators`` cores."""
    latency_s = max(latency_s, 1e-6)
    hold = max(hold_s or latency_s, 1e-6)
    outside_app = 0.0
    if cpu is not None and cpu.service_s is not None and loop_cpu_s is not None:
        outside_app = max(0.0, cpu.service_s - loop_cpu_s)
    rates: dict[str, float] = {}
    for bound in bounds(scenario, concurrency, shape):
        held = {"clients": latency_s, "event loop": hold + outside_app}.get(bound.resource, hold)
        rate = bound.rps(held)
        rates[bound.resource] = min(rate, rates.get(bound.resource, math.inf))
    if cpu is not None:
        rates.update(cpu_bounds(cpu, shape, generators))
    bound_name = min(rates, key=rates.__getitem__)
    rps = rates[bound_name]
    slots = {bound.resource: bound.slots / bound.hold_fraction for bound in bounds(scenario, concurrency, shape)}
    return Prediction(
        rps=rps,
        bound=bound_name,
        capacity=rps * latency_s,  # Little's law: requests in service at once, N = X * W
        latency_ms=latency_s * 1000,
        bounds=rates,
        slots=slots.get(bound_name),
    )


#: The model explains a case when measured / predicted throughput is within this factor either way.
MODEL_BAND = 1.25
#: A server this busy (CPU seconds per wall second, per worker) is CPU-bound, whatever Little's law says.
CPU_BUSY = 0.85


def in_band(efficiency: float | None) -> bool | None:
    return None if efficiency is None else 1 / MODEL_BAND <= efficiency <= MODEL_BAND


def explain(case: CaseSummary) -> str:
    """What went wrong with a case, and why it misses its prediction by more than ``MODEL_BAND`` ('' when nothing)."""
    notes = []
    generators = case.generators
    if generators is not None and generators.saturated:
        busiest = generators.busiest
        notes.append(f"bound: load generator ({generators.count} {generators.engine} process"
                     f"{'es' if generators.count > 1 else ''}, the busiest asking for {busiest:.0%} of a core): the "
                     "figure is the generators', not the service's" if busiest is not None else "bound: load generator")
    if case.errors:
        notes.append(f"error in {len(case.errors)} of {case.repetitions} rounds: " + " ".join(case.errors[0].split())[:140])
    share = case.worst_error_share
    if case.failures and share is not None:
        tail = ": its throughput counts only the successful ones" if case.too_many_errors else ""
        notes.append(f"{case.failures} failed/non-2xx responses (up to {share:.1%} of a round){tail}")
    measured, bound = case.efficiency, case.bound or "?"
    if in_band(measured) is False and measured is not None:
        cpu = case.cpu_utilisation
        part = {"service CPU": "service_s", "Postgres CPU": "postgres_s", "ab CPU": "client_s", GENERATOR_BOUND: "client_s",
                "wire proxy CPU": "proxy_s",
                "PgBouncer CPU": "pgbouncer_s", "event loop": "service_s"}.get(bound)
        before, during = (case.calibration_cpu_ms(part), case.cpu_ms(part)) if part else (None, None)
        grew = f" ({before:.2f} ms per request in the warm-up, {during:.2f} under load)" if before and during else ""
        if measured < 1:
            if bound in CPU_BOUNDS:
                why = ("the CPU the model budgets is not all there: other processes share the cores (the /ping probe, "
                       "the harness, anything else running), and CPU per request changes under load" + grew)
            elif cpu is not None and cpu > CPU_BUSY:
                why = f"the service kept {cpu:.0%} of a core busy: it is CPU-bound before its {bound} bound"
            elif bound == "threadpool":
                why = f"{case.concurrency} clients queue for the threads, and each hand-off costs more than S shows"
            elif bound.startswith("pool"):
                why = f"clients queue for the {bound.removeprefix('pool ')} pool's connections; acquiring under contention costs more than S shows"
            elif bound == "event loop":
                rose = f"its CPU per request rose{grew}, and " if before and during and during > before else ""
                why = (f"the loop's time per request grew under load beyond what one client shows: {rose}it waits for a "
                       "core it shares with Postgres and ab")
            else:
                why = "something the model does not count binds (the GIL, ab on the same cores, Postgres locks)"
        elif bound == "service CPU" and cpu is not None and cpu > 1:
            # The bound is one core per worker, for the GIL; CPU spent with the GIL released runs beside it.
            why = (f"the service kept {cpu:.2f} cores busy, more than the one per worker the GIL allows Python: work "
                   "that releases it (the kernel copying a file's pages, in the threads that read it) runs beside it" + grew)
        elif bound in CPU_BOUNDS:
            why = "CPU per request fell under load below the warm-up's (batched work, warm caches)" + grew
        else:
            why = f"the {bound} is held for less than S, measured with one client, says"
        notes.append(f"model miss ({measured:.0%} of the prediction, bound {bound}): {why}")
    if case.closed_sessions:
        notes.append(f"connection churn: {case.closed_sessions} Postgres sessions closed and "
                     f"{case.new_sessions or 0} opened during the runs")
    elif case.new_sessions:
        notes.append(f"its pool grew by {case.new_sessions} connections during the runs (beyond what the warm-up opened)")
    if case.outlier_rounds:
        notes.append("outlier round(s) " + ", ".join(str(r + 1) for r in case.outlier_rounds) + " (kept)")
    return "; ".join(notes)


def efficiency(measured_rps: float | None, predicted: Prediction) -> float | None:
    """Measured over predicted steady-state throughput."""
    if not measured_rps or predicted.rps <= 0:
        return None
    return measured_rps / predicted.rps


#: The bounds of the utilisation law: where one binds, a figure is explained by the CPU spent, not predicted.
CPU_BOUNDS = ("service CPU", "Postgres CPU", "ab CPU", "wire proxy CPU", "PgBouncer CPU", "shared cores", GENERATOR_BOUND)


def bound_class(bound: str | None) -> str | None:
    """Whether ``bound`` makes a figure predicted (Little's law over threads, connections, loop, clients) or
    explained (CPU-saturated: cores / CPU per request)."""
    if bound is None:
        return None
    return "explained" if bound in CPU_BOUNDS else "predicted"


def explained_rps(cpu: dict[str, Any] | None, shape: ServerShape, generators: int = 1) -> tuple[float, str] | None:
    """The utilisation law on the CPU a run itself spent per request: its rate if a CPU part was saturated."""
    if not cpu:
        return None
    spent = CpuPerRequest(**{k: cpu.get(k) for k in ("service_s", "postgres_s", "client_s", "new_sessions", "proxy_s",
                                                    "closed_sessions", "pgbouncer_s", "backends")})
    rates = cpu_bounds(spent, shape, generators)
    if not rates:
        return None
    name = min(rates, key=rates.__getitem__)
    return rates[name], name
