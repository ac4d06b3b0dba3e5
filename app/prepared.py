"""Refuse to serve a database that `iobench prepare` never migrated: every route on it would fail.

`iobench serve` prepares its database first; plain ``uvicorn --factory app.main:create_app`` does
not. Without this check such a service starts and answers 500 on every database route.
"""

from __future__ import annotations

import asyncpg
from alembic.script import ScriptDirectory

from app.settings import Settings
from db.migrate import alembic_config
from db.url import masked


class DatabaseNotPrepared(RuntimeError):
    """The database is missing, or its schema is not the one this code migrates to."""


async def schema_revisions(url: str, timeout: float) -> set[str] | None:
    """The Alembic revisions the database at ``url`` is at (empty: never migrated), or None if
    it cannot be asked now (the routes then answer 503 until it is back)."""
    try:
        # No statement cache: the two queries run once each, as the unnamed statement, so the check
        # also passes through PgBouncer's transaction pooling, whose server connections may hold
        # other clients' __asyncpg_stmt_N__ ("prepared statement ... already exists").
        connection = await asyncpg.connect(url, timeout=timeout, statement_cache_size=0)
    except asyncpg.InvalidCatalogNameError:
        return set()
    except Exception:  # noqa: BLE001 - unreachable, refused, bad password...: not this check's to judge
        return None
    try:
        if await connection.fetchval("SELECT to_regclass('alembic_version')") is None:
            return set()
        return {row["version_num"] for row in await connection.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await connection.close()


async def ensure_prepared(settings: Settings) -> None:
    """Raise DatabaseNotPrepared, saying to run `iobench prepare`, unless the database is at the
    migrations' head or cannot be reached now."""
    url = settings.url
    current = await schema_revisions(url, settings.connect_timeout)
    if current is None:
        return
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    if current != heads:
        at = ", ".join(sorted(current)) or "none (never migrated)"
        raise DatabaseNotPrepared(
            f"the database {masked(url)} is not prepared: its schema revision is {at}, this code needs "
            f"{', '.join(sorted(heads))}. Run `iobench prepare` (with the same DATABASE_URL), or start the "
            "service with `iobench serve`, which prepares it first."
        )
