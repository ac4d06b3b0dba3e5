"""The held-out test: does the model, calibrated at the profile's concurrency, predict the others?

The sweep measures a few cases at concurrencies the rounds never used. The model predicts each
point before looking at it, from what was measured elsewhere: W, S and the loop's CPU from the
calibration (one client), and the CPU per request of every part from the case's rounds at the
profile's concurrency. A point is a hit when its measured rate is within ``MODEL_BAND`` either
way of that prediction; every miss is named with its bound. Nothing here is fitted to the
sweep: no parameter is read from the points it judges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.catalogue import SCENARIOS_BY_ID
from loadtests.model import MODEL_BAND, Prediction, ServerShape, bound_class, predict
from loadtests.results import Record, is_main, successful_rps
from loadtests.stats import median
from loadtests.work import CpuPerRequest

#: The share of sweep points the model must predict within ``MODEL_BAND`` for the test to pass.
TARGET_SHARE = 0.9
_CPU_PARTS = ("service_s", "postgres_s", "client_s", "proxy_s", "pgbouncer_s")


@dataclass(frozen=True)
class Point:
    """One sweep point: what the model said before, what was measured."""

    case: str
    concurrency: int
    measured: float | None
    prediction: Prediction | None
    calibrated_at: int | None

    @property
    def ratio(self) -> float | None:
        return self.measured / self.prediction.rps if self.measured and self.prediction else None

    @property
    def hit(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else 1 / MODEL_BAND <= ratio <= MODEL_BAND

    @property
    def bound(self) -> str | None:
        return self.prediction.bound if self.prediction else None

    @property
    def kind(self) -> str | None:
        return bound_class(self.bound)


@dataclass(frozen=True)
class HeldOut:
    points: list[Point]

    @property
    def judged(self) -> list[Point]:
        return [p for p in self.points if p.hit is not None]

    @property
    def hits(self) -> int:
        return sum(1 for p in self.judged if p.hit)

    @property
    def misses(self) -> list[Point]:
        return [p for p in self.judged if not p.hit]

    @property
    def share(self) -> float | None:
        return self.hits / len(self.judged) if self.judged else None

    @property
    def passed(self) -> bool | None:
        share = self.share
        return None if share is None else share >= TARGET_SHARE

    def to_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "judged": len(self.judged), "share": self.share, "passed": self.passed,
                "misses": [{"case": p.case, "concurrency": p.concurrency, "ratio": p.ratio, "bound": p.bound}
                           for p in self.misses]}


def calibrated_cpu(records: list[Record]) -> CpuPerRequest | None:
    """Each part's CPU per request at the profile's concurrency: the median over the case's rounds."""
    found: dict[str, Any] = {}
    for part in _CPU_PARTS:
        found[part] = median([v for r in records if (v := (r.get("cpu") or {}).get(part)) is not None])
    if all(v is None for v in found.values()):
        return None
    return CpuPerRequest(found["service_s"], found["postgres_s"], found["client_s"], None,
                         proxy_s=found["proxy_s"], pgbouncer_s=found["pgbouncer_s"])


def predict_point(record: Record, main: list[Record], run: dict[str, Any]) -> Point:
    """The model's rate for one sweep point, from its calibration and the case's rounds alone."""
    scenario = SCENARIOS_BY_ID.get(str(record.get("id")))
    servers = run.get("servers") or []
    index = int(record.get("server") or 0)
    latency_ms = record.get("uncontended_ms")
    measured = successful_rps(record)
    if scenario is None or not latency_ms or index >= len(servers) or not main:
        return Point(record["case"], int(record.get("concurrency") or 0), measured, None, None)
    shape = ServerShape.from_config(servers[index])
    server_ms, loop_ms = record.get("server_ms"), record.get("loop_cpu_ms")
    prediction = predict(scenario, int(record.get("concurrency") or 0), latency_ms / 1000, shape,
                         hold_s=server_ms / 1000 if server_ms else None, cpu=calibrated_cpu(main),
                         loop_cpu_s=loop_ms / 1000 if loop_ms is not None else None)
    return Point(record["case"], int(record.get("concurrency") or 0), measured, prediction,
                 int(main[0].get("concurrency") or 0))


def judge(records: list[Record], run: dict[str, Any]) -> HeldOut | None:
    """Every sweep point of the run against the model calibrated on the rounds; None without a sweep."""
    sweep = [r for r in records if r.get("sweep") and not r.get("error")]
    if not sweep:
        return None
    main: dict[str, list[Record]] = {}
    for record in records:
        if is_main(record) and not record.get("error"):
            main.setdefault(record["case"], []).append(record)
    points = [predict_point(r, main.get(r["case"], []), run) for r in sweep]
    return HeldOut(sorted(points, key=lambda p: (p.case, p.concurrency)))
