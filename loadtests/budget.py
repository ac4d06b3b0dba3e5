"""The connection budget: will the services this run starts fit the Postgres server's max_connections?

Every started service opens all its pooled drivers (each at its pool minimum), and the block
being measured grows the pools of the drivers its cases use: an async driver's up to its
maximum, a sync driver's up to the threads that can hold a connection at once (the threadpool's
tokens; a blocking call in ``async def`` holds one). Every uvicorn worker has pools of its own.
The largest block sets the peak. A run that would meet "too many clients" halfway is refused
before any load is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.catalogue import DRIVERS, Kind
from app.settings import Settings

#: Connections the harness itself holds: its monitoring connection (work.PostgresBackends).
HARNESS_CONNECTIONS = 1


class PlannedJob(Protocol):
    @property
    def case(self) -> Any: ...

    @property
    def via(self) -> str: ...


class Planned(Protocol):
    """What the budget needs of a planned block (``plan.Block``)."""

    @property
    def name(self) -> str: ...

    @property
    def jobs(self) -> Sequence[PlannedJob]: ...


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
                f"({self.workers} worker(s), largest for block {self.worst_group}, plus the harness's own)")
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
    """The most server connections one started service opens: (count, the block that needs it).

    Through PgBouncer, the service's pools are PgBouncer's clients: the server sees its pool alone."""
    kinds = {driver.name: driver.kind for driver in DRIVERS if driver.pooled}
    worst, name = 0, "no database case"
    for group, growing, via_pgbouncer in groups:
        per_worker = 0
        for driver, kind in kinds.items():
            size = settings.pool_size(driver)
            if driver not in growing:
                per_worker += size.min
            else:
                per_worker += min(size.max, settings.threadpool_tokens) if kind is Kind.SYNC else size.max
        needed = pgbouncer_pool_size if via_pgbouncer else per_worker * settings.workers
        if needed > worst:
            worst, name = needed, group
    return worst + HARNESS_CONNECTIONS, name


def connection_budget(settings: Settings, blocks: Iterable[Planned], pgbouncer_pool_size: int = 0) -> Budget:
    """The run's peak against what the server at ``settings.database_url`` allows right now."""
    groups = []
    for block in blocks:
        growing = {d.name for job in block.jobs for d in job.case.scenario.drivers if d.pooled}
        groups.append((block.name, growing, any(job.via == "pgbouncer" for job in block.jobs)))
    needed, worst = peak(settings, groups, pgbouncer_pool_size)
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
