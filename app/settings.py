"""Service settings, read from the environment (prefix ``IOBENCH_``; ``DATABASE_URL`` as is)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.drivers.base import ConnectionConfig, PoolSize
from db.seed import SeedShape
from db.url import DEFAULT_URL, libpq_url


class Settings(BaseSettings):
    """Everything the service and its pools are configured with; /config reports it."""

    model_config = SettingsConfigDict(env_prefix="IOBENCH_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "IOBENCH_DATABASE_URL"),
        description="postgresql://user:password@host:port/dbname; unset means localhost:5432 or embedded.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: PositiveInt = 1
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"

    threadpool_tokens: PositiveInt = Field(
        40, description="AnyIO's default thread limiter size: how many `def` routes run at once."
    )
    pool_min: int = Field(1, ge=0)
    pool_max: PositiveInt = 10
    pools: dict[str, PoolSize] = Field(
        default_factory=dict,
        description='Per-driver overrides, JSON: IOBENCH_POOLS=\'{"asyncpg": {"min": 1, "max": 50}}\'.',
    )
    acquire_timeout: float = Field(10.0, gt=0, description="Seconds a request waits for a pooled connection.")
    connect_timeout: int = Field(5, ge=2, description="Seconds to open a connection (libpq's minimum is 2).")
    statement_timeout_ms: int = Field(15_000, ge=100, description="Server-side bound on any one query.")
    prepared_statements: bool = Field(
        True, description="false: no driver prepares statements on the server, as PgBouncer's transaction pooling needs (before 1.21)."
    )

    default_wait_seconds: float = Field(0.1, ge=0, description="S when a request gives no ?seconds= (the article used 3).")
    max_wait_seconds: float = Field(10.0, gt=0, description="Upper bound accepted for ?seconds=.")
    seed_rows: PositiveInt = Field(100_000, description="Rows in `items`; lookups draw ids from 1..seed_rows.")
    customers: PositiveInt = 1_000
    categories: PositiveInt = 10
    write_slots: PositiveInt = Field(1_000, description="`write` upserts into this many rows, so load never grows the table.")
    data_dir: Path = Path("data")
    db_rtt_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Milliseconds of round trip `iobench serve` puts between the service and Postgres (the wire "
        "proxy, db/wire_proxy); the app itself only reports it in /config, so a load test knows the database's distance.",
    )
    completions_dir: Path | None = Field(
        None,
        description="Folder where each worker records when every response completed (app/completions.py), "
        "for a load test to count the requests of a steady window; unset: nothing recorded, no cost.",
    )

    @property
    def url(self) -> str:
        """The libpq URL of the iobench database: ``DATABASE_URL``, else localhost:5432/iobench."""
        return libpq_url(self.database_url or DEFAULT_URL)

    def pool_size(self, driver: str) -> PoolSize:
        """The pool bounds for ``driver``: its override, else the global pool_min/pool_max."""
        return self.pools.get(driver, PoolSize(min=min(self.pool_min, self.pool_max), max=self.pool_max))

    def connection(self, driver: str, *, driver_defaults: bool = False) -> ConnectionConfig:
        """Everything the Postgres driver named ``driver`` is built from (``driver_defaults``: the
        driver's out-of-the-box transactions and reset, for the catalogue's ``-defaults`` entries)."""
        return ConnectionConfig(
            driver_defaults=driver_defaults,
            driver=driver,
            url=self.url,
            pool=self.pool_size(driver),
            acquire_timeout=self.acquire_timeout,
            connect_timeout=self.connect_timeout,
            statement_timeout_ms=self.statement_timeout_ms,
            prepared_statements=self.prepared_statements,
        )

    def seed_shape(self) -> SeedShape:
        """The data set these settings ask for."""
        return SeedShape(self.seed_rows, self.customers, self.categories)

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for a server started in another process."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            key = "DATABASE_URL" if name == "database_url" else f"IOBENCH_{name.upper()}"
            env[key] = json.dumps(value) if isinstance(value, dict | list) else str(value)
        return env
