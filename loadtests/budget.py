"""The connection budget: will the services this run starts fit the Postgres server's max_connections?

Every started service opens all its pooled drivers (each at its pool minimum), and the group
being measured grows its own drivers' pools (and a threadpool twin's) to their maximum; every
uvicorn worker has pools of its own. The largest group sets the peak. A run that would meet
"too many clients" halfway is refused before any load is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from app.catalogue import DRIVERS
from app.settings import Settings

#: Connections the harness itself holds: its monitoring connection (work.PostgresBackends).
HARNESS_CONNECTIONS = 1


class Planned(Protocol):
    """What the budget needs of a planned job (``runner.Job``)."""

    @property
    def group(self) -> str: ...

    @property
    def case(self) -> object: ...

    @property
    def via(self) -> str: ...


@dataclass(frozen=True)
class Budget:
    needed: int
    worst_group: str
    workers: int
    max_connections: int | None
    reserved: int | None
    in_use: int | None

    @property
    def available(self) -> int | None:
        if self.max_connections is None:
            return None
        return self.max_connections - (self.reserved or 0) - (self.in_use or 0)

    @property
    def fits(self) -> bool:
        return self.available is None or self.needed <= self.available

    def describe(self) -> str:
        need = (f"connection budget: a started service opens at most {self.needed} connections "
                f"({self.workers} worker(s), largest for {self.worst_group}, plus the harness's own)")
        if self.max_connections is None:
            return need + "; the server's max_connections could not be read"
        verdict = "fits" if self.fits else "does not fit: lower --pool-max or --workers, or raise max_connections"
        return (f"{need}; the server allows {self.max_connections}, {self.reserved or 0} reserved for superusers "
                f"and {self.in_use or 0} in use: {verdict}")

    def to_dict(self) -> dict[str, object]:
        return {"needed": self.needed, "worst_group": self.worst_group, "workers": self.workers,
                "max_connections": self.max_connections, "reserved": self.reserved, "in_use": self.in_use,
                "fits": self.fits}


def peak(settings: Settings, groups: Iterable[tuple[str, set[str], bool]], pgbouncer_pool_size: int = 0) -> tuple[int, str]:
    """The most server connections one started service opens: (count, the group that needs it).

    Through PgBouncer, the service's pools are PgBouncer's clients: the server sees its pool alone."""
    pooled = [driver.name for driver in DRIVERS if driver.pooled]
    worst, name = 0, "no database case"
    for group, growing, via_pgbouncer in groups:
        per_worker = sum(settings.pool_size(d).max if d in growing else settings.pool_size(d).min for d in pooled)
        needed = pgbouncer_pool_size if via_pgbouncer else per_worker * settings.workers
        if needed > worst:
            worst, name = needed, group
    return worst + HARNESS_CONNECTIONS, name


def connection_budget(settings: Settings, jobs: Iterable[Planned], pgbouncer_pool_size: int = 0) -> Budget:
    """The run's peak against what the server at ``settings.database_url`` allows right now."""
    groups: dict[str, tuple[set[str], bool]] = {}
    for job in jobs:
        scenario = job.case.scenario  # type: ignore[attr-defined]  # runner.Job's Case
        growing, _ = groups.setdefault(job.group, (set(), job.via == "pgbouncer"))
        growing.update(d.name for d in scenario.drivers if d.pooled)
    needed, worst = peak(settings, [(group, growing, via) for group, (growing, via) in groups.items()], pgbouncer_pool_size)
    limits = _server_limits(settings.database_url)
    return Budget(needed, worst, settings.workers, *limits)


def _server_limits(database_url: str | None) -> tuple[int | None, int | None, int | None]:
    """max_connections, superuser_reserved_connections and connections in use, or Nones."""
    if not database_url:
        return None, None, None
    import psycopg

    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as connection:
            row = connection.execute(
                "SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int, "
                "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int - 1"
            ).fetchone()
    except psycopg.Error:
        return None, None, None
    assert row is not None
    return int(row[0]), int(row[1]), max(0, int(row[2]))
