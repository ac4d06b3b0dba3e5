"""What every driver shares: its connection settings and the mapping of failures to 503."""

from __future__ import annotations

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
