"""What a request costs: the work it puts on the wire, and the CPU it takes from the service, Postgres and ab.

Drivers are only comparable on equal work, so the harness counts it instead of assuming it:

- **On the wire** (``count_work``): before the rounds, each pooled driver's cases run on a
  service that reaches Postgres through the wire proxy (``db.wire_proxy``, no added delay),
  one client at a time, and the proxy counts round trips, statements, Parse messages and new
  sessions per request. Counting is kept out of the measured runs, where the proxy's own CPU
  would be in the way.
- **CPU** (``CpuMeter``): during a run, the CPU seconds of the service's processes (psutil),
  of the Postgres backends serving it (``db.server_stats``: their /proc times, found through
  pg_stat_activity; local servers only), and of ab (the harness's reaped children), each per request. The
  utilisation law turns them into bounds (``model.predict``).
"""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Self, TypedDict

import httpx

from loadtests.environment import cpu_seconds

if TYPE_CHECKING:
    from db.server_stats import ServerStats

#: Requests per case when counting wire work: enough to average out a pool's first-use costs.
COUNT_REQUESTS = 10
WARM_REQUESTS = 3


class WirePerRequest(TypedDict):
    """Frontend messages per request, counted by the wire proxy with one client."""

    requests: int
    round_trips: float
    statements: float
    parses: float
    sessions: float  # new server sessions per request: anything above 0 is connection churn


def count_work(url: str, proxy: Any, requests: int = COUNT_REQUESTS) -> WirePerRequest | None:
    """Per-request wire work of the route at ``url`` on a service that talks to Postgres through ``proxy``.

    ``proxy`` is a ``db.wire_proxy.ProxyProcess``. None when the route does not answer 200.
    """
    with httpx.Client(timeout=60, headers={"Connection": "close"}) as client:
        for _ in range(WARM_REQUESTS):  # pools open, statements get prepared: steady state is what counts
            if client.get(url).status_code != 200:
                return None
        proxy.reset()
        for _ in range(requests):
            if client.get(url).status_code != 200:
                return None
        counted = proxy.reset()
    return {"requests": requests, "round_trips": counted.round_trips / requests,
            "statements": counted.statements / requests, "parses": counted.parses / requests,
            "sessions": counted.sessions / requests}


@dataclass(frozen=True)
class CpuPerRequest:
    """CPU seconds per successful request, by who spent them (None where it could not be read)."""

    service_s: float | None
    postgres_s: float | None
    client_s: float | None
    #: Postgres backends of the service that appeared during the run: a pool growing, or churning.
    new_sessions: int | None
    #: The wire proxy's own CPU, when the run added a round-trip time: the instrument's cost.
    proxy_s: float | None = None
    #: Backends that were there before the run and gone after it: connections closed mid-run (churn).
    closed_sessions: int | None = None
    #: PgBouncer's own CPU, when the run went through it.
    pgbouncer_s: float | None = None
    #: Postgres backends of the service at the end of the run: the server connections it held.
    backends: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def total_s(self) -> float | None:
        parts = [p for p in (self.service_s, self.postgres_s, self.client_s, self.proxy_s, self.pgbouncer_s) if p is not None]
        return sum(parts) if parts else None


def open_server_stats(database_url: str | None) -> ServerStats | None:
    """A monitor of the Postgres backends serving the iobench service (application_name iobench-*),
    or None when there is no database URL or it cannot be reached. Their CPU needs the server on this
    machine (``db.server_stats``): elsewhere the snapshots carry none."""
    if not database_url:
        return None
    from db.server_stats import ServerStats

    try:
        return ServerStats(database_url, application="iobench-%")
    except Exception:  # noqa: BLE001 - psycopg's errors are not importable here without loading the driver
        return None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU of the service, its Postgres backends, ab and any middlebox (wire proxy, PgBouncer) over one block of load::

        with CpuMeter(service_pid, stats, {"proxy": proxy_pid}) as meter:
            result = run_ab(...)
        meter.per_request(result.successful)
    """

    def __init__(self, service_pid: int | None, stats: ServerStats | None, middle: dict[str, int] | None = None) -> None:
        self.service_pid = service_pid
        self.stats = stats
        self.middle = middle or {}

    def _postgres_cpu(self) -> dict[int, float] | None:
        return self.stats.snapshot().cpu if self.stats is not None else None

    def _read(self) -> tuple[float | None, dict[str, float | None], dict[int, float] | None, float]:
        return (cpu_seconds(self.service_pid) if self.service_pid else None,
                {name: cpu_seconds(pid) for name, pid in self.middle.items()}, self._postgres_cpu(), _children_cpu())

    def __enter__(self) -> Self:
        self._before = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        self._after = self._read()

    def per_request(self, requests: int) -> CpuPerRequest | None:
        if requests <= 0:
            return None
        (service, middle, postgres, client), (service_after, middle_after, postgres_after, client_after) = self._before, self._after

        def delta(before: float | None, after: float | None) -> float | None:
            return (after - before) / requests if before is not None and after is not None else None

        pg = new = closed = None
        if postgres is not None and postgres_after is not None:
            pg = sum(cpu - postgres.get(pid, 0.0) for pid, cpu in postgres_after.items()) / requests
            new = len(postgres_after.keys() - postgres.keys())
            closed = len(postgres.keys() - postgres_after.keys())
        return CpuPerRequest(delta(service, service_after), pg, (client_after - client) / requests, new,
                             delta(middle.get("proxy"), middle_after.get("proxy")), closed,
                             delta(middle.get("pgbouncer"), middle_after.get("pgbouncer")),
                             len(postgres_after) if postgres_after is not None else None)
