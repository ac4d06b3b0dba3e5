"""The server measured against the shape a profile assumes: what differs, the settings that would match,
and which verdicts follow from the difference rather than from the drivers.

A profile's findings are claims about one architecture (its threadpool, its pools, its workers, the
database's distance). A service started elsewhere (``--target``) or with overrides is judged against
the same thresholds, so a user must see, before the verdicts, where the server is not that architecture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.catalogue import DRIVERS
from loadtests.claims import scenario_of
from loadtests.findings import MIN_EFFECT, Verdict
from loadtests.model import ServerShape, capacity


@dataclass(frozen=True)
class Difference:
    """One setting where the server measured is not the profile's shape."""

    setting: str
    measured: str
    assumed: str
    #: What gives the profile's value: an environment assignment (``IOBENCH_...=N``) or an ``iobench serve`` option.
    fix: str

    def describe(self) -> str:
        return f"{self.setting}: the server runs {self.measured}, the profile assumes {self.assumed}"


def _pool_sizes(settings: dict[str, Any]) -> dict[str, int]:
    """Each pooled driver's pool size as the service's settings give it (its override, else pool_max)."""
    overrides = settings.get("pools") or {}
    return {d.name: int((overrides.get(d.name) or {}).get("max") or settings.get("pool_max") or 0)
            for d in DRIVERS if d.pooled}


def measured_shape(config: dict[str, Any]) -> ServerShape:
    """A served /config as the model's shape: the live threadpool, every pooled driver's configured pool."""
    settings = config.get("settings") or {}
    pools = _pool_sizes(settings) if settings else {n: int(p["max"]) for n, p in (config.get("pools") or {}).items()}
    return ServerShape(threadpool_tokens=int(config["threadpool_tokens"]), pool_max=pools,
                       workers=int(config.get("workers") or 1), cpu_count=int(config.get("cpu_count") or 1))


def differences(config: dict[str, Any], declared: dict[str, Any], db_rtt_ms: float = 0.0, *,
                planned_workers: Iterable[int] = (), planned_rtts: Iterable[float] = ()) -> list[Difference]:
    """Where one served /config differs from ``declared`` (a profile's ``declared()``) and ``db_rtt_ms``.

    ``planned_workers`` and ``planned_rtts`` are the variants the profile itself measures (``--worker-levels``,
    ``--rtt-levels``): a server on one of them is as planned. A server on more workers than declared is
    compared per worker, as the harness splits the profile's threadpool and pools across workers
    (``runner.split_across_workers``).
    """
    settings = config.get("settings") or {}
    workers = int(config.get("workers") or 1)
    declared_workers = int(declared.get("workers") or 1)
    share = declared_workers / workers
    found = []
    if workers != declared_workers and workers not in set(planned_workers):
        found.append(Difference("uvicorn workers", str(workers), str(declared_workers), f"IOBENCH_WORKERS={declared_workers}"))
    tokens, want_tokens = int(config["threadpool_tokens"]), max(1, round(int(declared["threadpool_tokens"]) * share))
    if tokens != want_tokens:
        found.append(Difference("threadpool tokens", str(tokens), str(want_tokens), f"IOBENCH_THREADPOOL_TOKENS={want_tokens}"))
    pools, want_pool = set(_pool_sizes(settings).values()), max(1, round(int(declared["pool_max"]) * share))
    if settings and pools != {want_pool}:
        fix = f"IOBENCH_POOL_MAX={want_pool}" + (" IOBENCH_POOLS='{}'" if settings.get("pools") else "")
        found.append(Difference("pool size", "pools of " + ", ".join(map(str, sorted(pools))), f"pools of {want_pool}", fix))
    rtt = float(settings.get("db_rtt_ms") or 0.0)
    if all(abs(rtt - planned) > 1e-9 for planned in (db_rtt_ms, *planned_rtts)):
        found.append(Difference("database distance", f"{rtt:g} ms of round trip added", f"{db_rtt_ms:g} ms",
                                f"--db-rtt {db_rtt_ms:g}"))
    return found


def run_differences(run: dict[str, Any]) -> list[Difference]:
    """Every server of a run folder against its profile, each difference once."""
    profile = run.get("profile") or {}
    declared = profile.get("declared")
    if not declared:
        return []
    found: dict[tuple[str, str], Difference] = {}
    for config in run.get("servers") or []:
        if "threadpool_tokens" not in config:
            continue
        for difference in differences(config, declared, float(profile.get("db_rtt_ms") or 0.0),
                                      planned_workers=profile.get("worker_levels") or (),
                                      planned_rtts=profile.get("rtt_levels") or ()):
            found.setdefault((difference.setting, difference.measured), difference)
    return list(found.values())


def matching_command(found: Iterable[Difference]) -> str:
    """The ``iobench serve`` command line, environment first, that gives the profile's shape."""
    fixes = list(dict.fromkeys(difference.fix for difference in found))
    options = [fix for fix in fixes if fix.startswith("--")]
    return " ".join([*(fix for fix in fixes if fix not in options), "iobench serve", *options])


@dataclass(frozen=True)
class ShapeConsequence:
    """A verdict that the server's shape explains: the model predicts no effect to show on the server measured."""

    verdict: Verdict
    measured_ratio: float
    declared_ratio: float

    def describe(self) -> str:
        return (f"{self.verdict.finding.id} {self.verdict.status} follows from the server's shape: on the server measured "
                f"Little's law predicts a ratio of {self.measured_ratio:.3g} (less than a {MIN_EFFECT:g}x effect, so the "
                f"claim cannot show), on the profile's shape {self.declared_ratio:.3g}")


def _effect(ratio: float, op: str) -> float:
    return ratio if op == ">=" else 1 / ratio


def consequences(verdicts: Iterable[Verdict], run: dict[str, Any]) -> list[ShapeConsequence]:
    """Failed or inconclusive throughput findings whose effect the declared shape predicts and the measured one does not."""
    declared = (run.get("profile") or {}).get("declared")
    servers = [config for config in run.get("servers") or [] if "threadpool_tokens" in config]
    if not declared or not servers:
        return []
    profile_shape = ServerShape.declared(int(declared["threadpool_tokens"]), int(declared["pool_max"]),
                                         workers=int(declared.get("workers") or 1))
    server_shape = measured_shape(servers[0])
    found = []
    for verdict in verdicts:
        finding = verdict.finding
        if finding.denominator is None:  # a bound on one case: no ratio for the shape to predict
            continue
        num, den = scenario_of(finding.numerator), scenario_of(finding.denominator)
        if verdict.status not in ("fail", "inconclusive") or finding.metric != "rps" or num is None or den is None:
            continue
        concurrency = finding.concurrency or int(declared["concurrency"])
        on_server = capacity(num, concurrency, server_shape) / capacity(den, concurrency, server_shape)
        on_profile = capacity(num, concurrency, profile_shape) / capacity(den, concurrency, profile_shape)
        if _effect(on_server, finding.op) < MIN_EFFECT <= _effect(on_profile, finding.op):
            found.append(ShapeConsequence(verdict, on_server, on_profile))
    return found


def connection_shortfall(config: dict[str, Any]) -> str | None:
    """A served /config whose pools, all full, would open more connections than its Postgres allows.

    Pools stay open once grown, so a run that measures driver after driver on one running service reaches
    that total; the harness's own servers (one per block) never do. None when it fits or is unknown."""
    limit = (config.get("database") or {}).get("max_connections")
    total = int(config.get("pool_max_total") or 0) * int(config.get("workers") or 1)
    if not isinstance(limit, int) or total <= limit:
        return None
    return (f"the service's pools can open {total} connections in all and its Postgres allows {limit} (max_connections): "
            "a run that measures driver after driver on it fills the pools of the first ones and the later ones get "
            "\"too many clients\" (503s). Raise max_connections, lower IOBENCH_POOL_MAX, or measure fewer drivers "
            "(--driver)")

