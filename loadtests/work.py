"""What a request costs: the work it puts on the wire, and the CPU it takes from the service, Postgres and ab.

Drivers are only comparable on equal work, so the harness counts it instead of assuming it:

- **On the wire** (``count_work``): before the rounds, each pooled driver's cases run on a
  service that reaches Postgres through the wire proxy (``db.wire_proxy``, no added delay),
  one client at a time, and the proxy counts round trips, statements, Parse messages and new
  sessions per request. Counting is kept out of the measured runs, where the proxy's own CPU
  would be in the way.
- **CPU** (``CpuMeter``): over a window, the CPU seconds of the service's processes, of the
  Postgres backends serving it (``db.server_stats``, found through pg_stat_activity; local
  servers only), of ab and of any middlebox, each per request, all from the scheduler's
  nanosecond counters; and the host's steal time. The utilisation law turns them into bounds
  (``model.predict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import httpx

from loadtests.environment import cpu_seconds, steal_seconds

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
    #: CPU seconds per request the host gave other guests meanwhile (all CPUs): the host, not the code, at work.
    steal_s: float | None = None

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


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds used so far by each part, at one moment (None where it cannot be read)."""

    service: float | None
    middle: dict[str, float | None]
    postgres: dict[int, float] | None
    client: float | None
    steal: float | None


class CpuMeter:
    """CPU of the service, its Postgres backends, ab and any middlebox (wire proxy, PgBouncer), read at any moment::

        meter = CpuMeter(service_pid, stats, {"proxy": proxy_pid})
        before = meter.read(ab_pid)
        ...  # the window
        meter.per_request(before, meter.read(ab_pid), completions)

    Every process is read from the scheduler's nanosecond counters (``environment.cpu_seconds``), ab
    while it still runs, so a window can start and end in the middle of an ab run.
    """

    def __init__(self, service_pid: int | None, stats: ServerStats | None, middle: dict[str, int] | None = None) -> None:
        self.service_pid = service_pid
        self.stats = stats
        self.middle = middle or {}

    def read(self, client_pids: int | Sequence[int] | None = None) -> CpuReading:
        """Everyone's CPU now; the client's is the sum over ``client_pids`` (several load generators), None when
        one of them cannot be read (a generator on another machine)."""
        pids = [client_pids] if isinstance(client_pids, int) else list(client_pids or ())
        clients = [cpu_seconds(pid, children=False) for pid in pids]
        return CpuReading(
            cpu_seconds(self.service_pid) if self.service_pid else None,
            {name: cpu_seconds(pid) for name, pid in self.middle.items()},
            self.stats.snapshot().cpu if self.stats is not None else None,
            sum(c for c in clients if c is not None) if clients and None not in clients else None,
            steal_seconds(),
        )

    @staticmethod
    def per_request(before: CpuReading, after: CpuReading, requests: int) -> CpuPerRequest | None:
        if requests <= 0:
            return None

        def delta(start: float | None, end: float | None) -> float | None:
            return (end - start) / requests if start is not None and end is not None else None

        pg = new = closed = None
        if before.postgres is not None and after.postgres is not None:
            pg = sum(cpu - before.postgres.get(pid, 0.0) for pid, cpu in after.postgres.items()) / requests
            new = len(after.postgres.keys() - before.postgres.keys())
            closed = len(before.postgres.keys() - after.postgres.keys())
        return CpuPerRequest(delta(before.service, after.service), pg, delta(before.client, after.client), new,
                             delta(before.middle.get("proxy"), after.middle.get("proxy")), closed,
                             delta(before.middle.get("pgbouncer"), after.middle.get("pgbouncer")),
                             len(after.postgres) if after.postgres is not None else None,
                             delta(before.steal, after.steal))
