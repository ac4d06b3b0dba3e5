"""What every driver shares: its connection settings and the mapping of failures to 503."""

from __future__ import annotations

import select
from dataclasses import dataclass
from typing import Any

from app.settings import PoolSize, Settings
from db.errors import DatabaseUnavailable, Reason
from db.url import database_url, libpq_url

QUERY_CANCELED = "57014"  # SQLSTATE raised when statement_timeout fires


@dataclass(frozen=True)
class ConnectionConfig:
    """How one driver connects: the URL of the iobench database, its pool bounds and timeouts."""

    driver: str
    url: str
    pool: PoolSize
    acquire_timeout: float
    connect_timeout: int
    statement_timeout_ms: int

    @classmethod
    def from_settings(cls, settings: Settings, driver: str) -> ConnectionConfig:
        return cls(
            driver=driver,
            url=libpq_url(database_url(settings)),
            pool=settings.pool_size(driver),
            acquire_timeout=settings.acquire_timeout,
            connect_timeout=settings.connect_timeout,
            statement_timeout_ms=settings.statement_timeout_ms,
        )

    @property
    def application_name(self) -> str:
        # Lets pg_stat_activity count each driver's connections.
        return f"iobench-{self.driver}"

    @property
    def libpq_options(self) -> str:
        return f"-c statement_timeout={self.statement_timeout_ms}"

    def pool_info(self, kind: str, **live: Any) -> dict[str, Any]:
        return {"driver": self.driver, "kind": kind, "min": self.pool.min, "max": self.pool.max,
                "acquire_timeout": self.acquire_timeout, **live}


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, looking through SQLAlchemy's wrapper (``.orig``)."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str):
            return code
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def unavailable(config: ConnectionConfig, exc: BaseException, reason: Reason | None = None) -> DatabaseUnavailable:
    """Wrap a driver error as the 503 the service answers with."""
    if reason is None:
        reason = "statement_timeout" if sqlstate(exc) == QUERY_CANCELED else "database_unavailable"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(config.driver, reason, detail)


# Anything readable, or an error, on the socket of an idle connection.
_HUNG_UP = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | getattr(select, "POLLRDHUP", 0)


def peer_hung_up(fileno: int) -> bool:
    """True if the server has closed this idle connection (or is closing it).

    An idle Postgres connection gets nothing from the server until it sends a query, so
    anything readable on its socket is the server's goodbye: the FATAL message of a shutdown
    or restart, then the end of the stream (or a reset from whatever cut the link). The pools
    call this when they hand out a connection: one ``poll(2)`` with a zero timeout, about 2 µs
    and no round trip, where a pre-ping (``SELECT 1``) would add one to every request.
    A link that dies silently (no FIN, no RST) is not seen here; its query fails and the pool
    drops it then.
    """
    poller = select.poll()
    poller.register(fileno, _HUNG_UP)
    return bool(poller.poll(0))
