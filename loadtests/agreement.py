"""Do the engines agree? One case measured with one ab, N ab processes and Locust, in alternating rounds on one server.

Where none of them is the bottleneck, the load generator must not change the answer: each round measures the case
once per engine (odd rounds in reverse order, so drift does not favour one), every sample counted on the service's
completion log as a run counts it (``Harness.measure``). An engine's figure is the median over the rounds of its
rate over one ab's in the same round; the table gives beside it each generator's CPU and the service's, so a gap can
be read: a generator near a full core is the bottleneck (*bound: load generator*), and on a machine whose cores the
generators share with the service, a generator that costs more CPU per request (Locust is Python) leaves the
service less of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from loadtests.locust_load import Swarm
from loadtests.plan import Job
from loadtests.results import Record, successful_rps
from loadtests.runner import Harness
from loadtests.stats import median
from loadtests.work import open_server_stats


@contextmanager
def closing_stats(harness: Harness) -> Iterator[None]:
    try:
        yield
    finally:
        if harness.stats is not None:
            harness.stats.close()


@dataclass(frozen=True)
class Engine:
    """One way of making the load: a label, ab processes, or a Locust swarm."""

    label: str
    generators: int = 1
    swarm: Swarm | None = None


@dataclass(frozen=True)
class EngineFigures:
    """An engine's samples of the case, one per round, and how they compare with one ab's of the same rounds."""

    label: str
    records: tuple[Record, ...]
    reference: tuple[Record, ...]

    @property
    def rates(self) -> list[float | None]:
        return [successful_rps(r) for r in self.records]

    @property
    def rps(self) -> float | None:
        return median([r for r in self.rates if r is not None])

    @property
    def ratio(self) -> float | None:
        """The median over the rounds of this engine's rate over one ab's in the same round."""
        pairs = [(mine, ab) for mine, ab in zip(self.rates, (successful_rps(r) for r in self.reference), strict=False)]
        return median([mine / ab for mine, ab in pairs if mine and ab])

    @property
    def generator_cpu(self) -> list[float | None]:
        """Each generator's CPU in cores (median over the rounds)."""
        used = [r.get("generators") or {} for r in self.records]
        count = max((int(g.get("count") or 1) for g in used), default=1)
        return [median([c[i] for g in used if i < len(c := g.get("cpu") or []) and c[i] is not None]) for i in range(count)]

    @property
    def client_ms(self) -> float | None:
        """The generators' CPU per request, all of them together (ms, median)."""
        return median([v * 1000 for r in self.records if (v := (r.get("cpu") or {}).get("client_s")) is not None])

    @property
    def service_cores(self) -> float | None:
        return median([v for r in self.records if (v := r.get("cpu_utilisation")) is not None])

    @property
    def saturated(self) -> bool:
        judged = [bool(g["saturated"]) for r in self.records if (g := r.get("generators")) and g.get("saturated") is not None]
        return bool(judged) and 2 * sum(judged) >= len(judged)

    @property
    def bound(self) -> str | None:
        if self.saturated:
            return "load generator"
        return next((b for r in self.records if (b := (r.get("model") or {}).get("bound"))), None)

    @property
    def errors(self) -> list[str]:
        return [str(r["error"]) for r in self.records if r.get("error")]

    def agrees(self, margin: float) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else abs(ratio - 1) <= margin

    def to_dict(self, margin: float) -> dict[str, Any]:
        return {"engine": self.label, "rates": self.rates, "rps": self.rps, "ratio_to_ab": self.ratio,
                "agrees": self.agrees(margin), "generator_cpu": self.generator_cpu, "client_ms": self.client_ms,
                "service_cores": self.service_cores, "bound": self.bound, "errors": self.errors}


def measure_engines(harness: Harness, job: Job, engines: Sequence[Engine], rounds: int) -> list[EngineFigures]:
    """``rounds`` rounds of ``job`` on one server, one sample per engine each, odd rounds backwards; the first
    engine is the reference the others are compared with."""
    found: dict[str, list[Record]] = {engine.label: [] for engine in engines}
    harness.stats = harness.stats or open_server_stats(harness.settings.database_url)
    with harness.serve(job) as served, closing_stats(harness):
        for number in range(rounds):
            order = list(engines) if number % 2 == 0 else list(reversed(engines))
            for position, engine in enumerate(order):
                harness.generators, harness.swarm = engine.generators, engine.swarm
                record = harness.measure(job, served, "agreement", number, position, first=number == 0 and position == 0)
                record["variant"] = engine.label != engines[0].label
                harness.folder.append(record)
                harness.records.append(record)
                found[engine.label].append(record)
                harness.console.print(f"r{number + 1} {engine.label:<10} {successful_rps(record) or 0:>9.1f} rps"
                                      + (f"  error: {record['error']}" if record.get("error") else ""), highlight=False)
                if harness.lost is not None:
                    raise harness.lost
    reference = tuple(found[engines[0].label])
    return [EngineFigures(engine.label, tuple(found[engine.label]), reference) for engine in engines]


__all__ = ["Engine", "EngineFigures", "measure_engines"]
