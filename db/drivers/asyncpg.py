"""asyncpg: the native async driver, with its own ``create_pool``.

Equal work: the pool's ``reset`` is a coroutine that does nothing (asyncpg >= 0.30). On release
the pool still rolls back a transaction left open (``Connection._reset`` runs whatever ``reset``
is), but no longer sends its reset query (``SELECT pg_advisory_unlock_all(); CLOSE ALL;
UNLISTEN *; RESET ALL``), one round trip and one server transaction per checkout. That query
undoes session state; no route here leaves any (no SET, LISTEN, cursors or advisory locks).
With ``driver_defaults`` the pool keeps its default reset.
"""

from __future__ import annotations

from typing import Any, TypedDict

import asyncpg

from db import queries
from db.drivers.base import ConnectionConfig, lost_prepared_statement, unavailable

# TooManyConnectionsError (53300, also a database's CONNECTION LIMIT) is "insufficient resources", not a
# PostgresConnectionError, but the server is as unable to serve as when it refuses the connection.
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                      asyncpg.TooManyConnectionsError)
_MIN_POLICY = "opened at start; a lost connection is reopened by the next acquire; idle ones above min close after 300 s"


class _StatementCache(TypedDict, total=False):
    """``create_pool``'s cache keyword, left out to keep asyncpg's default."""

    statement_cache_size: int


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's ``reset``: nothing beyond the rollback of an open transaction the pool always does."""


class AsyncpgDatabase:
    """Awaitable queries over an asyncpg pool."""

    kind = "async"
    #: What ``prepared_statements=False`` sets: no statement cache, so every query runs as the
    #: unnamed statement (asyncpg >= 0.31); the FAQ's answer for PgBouncer
    #: (https://magicstack.github.io/asyncpg/current/faq.html).
    pgbouncer_setting = "statement_cache_size=0"

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        try:
            self._pool = await self._create_pool(self.config.min_size)
        except (TimeoutError, *_CONNECTION_ERRORS):
            # Start anyway with an empty pool: requests answer 503 until the database is back.
            self._pool = await self._create_pool(0)

    def _create_pool(self, min_size: int) -> Any:
        cache: _StatementCache = {} if self.config.prepared_statements else {"statement_cache_size": 0}
        return asyncpg.create_pool(
            self.config.url,
            min_size=min_size,
            max_size=self.config.pool.max,
            timeout=self.config.connect_timeout,
            reset=None if self.config.driver_defaults else _keep_session,
            **cache,
            server_settings={
                "statement_timeout": str(self.config.statement_timeout_ms),
                "application_name": self.config.application_name,
            },
        )

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def pool_info(self) -> dict[str, Any]:
        live = {"open": self._pool.get_size(), "idle": self._pool.get_idle_size()} if self._pool else {}
        return self.config.pool_info("asyncpg.Pool", _MIN_POLICY, **live)

    async def _fetch(self, query: queries.Query, values: dict[str, Any], *, transaction: bool = False) -> list[asyncpg.Record]:
        assert self._pool is not None, "driver not started"
        try:
            async with self._pool.acquire(timeout=self.config.acquire_timeout) as connection:
                if not transaction:
                    return await connection.fetch(query.numeric, *query.positional(values))
                async with connection.transaction():
                    return await connection.fetch(query.numeric, *query.positional(values))
        except TimeoutError as exc:
            raise unavailable(self.config, exc, "pool_timeout") from exc
        except (*_CONNECTION_ERRORS, asyncpg.QueryCanceledError) as exc:
            raise unavailable(self.config, exc, pgbouncer_setting=self.pgbouncer_setting) from exc
        except asyncpg.PostgresError as exc:
            if not lost_prepared_statement(self.config, exc):
                raise
            raise unavailable(self.config, exc, pgbouncer_setting=self.pgbouncer_setting) from exc

    async def server_facts(self) -> dict[str, Any]:
        """What the report needs to know about the server: version and connection limit."""
        rows = await self._fetch(queries.SERVER_FACTS, {})
        return dict(rows[0])

    async def pg_sleep(self, seconds: float) -> float:
        await self._fetch(queries.PG_SLEEP, {"seconds": seconds})
        return seconds

    async def lookup(self, item_id: int) -> dict[str, Any] | None:
        rows = await self._fetch(queries.LOOKUP, {"item_id": item_id})
        return dict(rows[0]) if rows else None

    async def report(self, category: int) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch(queries.REPORT, {"category": category})]

    async def write(self, slot: int, note: str) -> dict[str, Any]:
        rows = await self._fetch(queries.WRITE, {"slot": slot, "note": note}, transaction=True)
        return dict(rows[0])
