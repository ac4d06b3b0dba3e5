"""Deterministic seed data: the same settings always give byte-identical tables.

Rows are computed by Postgres from ``generate_series`` (no randomness, no client round
trips), so 100k items take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, pool, text

from db.url import with_driver

REGIONS = ("central", "east", "north", "south", "west")
#: Bumped whenever the formulas below change, so existing databases are seeded again.
SEED_VERSION = 2


@dataclass(frozen=True)
class SeedShape:
    """What to seed: ``rows`` items over ``customers`` customers and ``categories`` categories."""

    rows: int
    customers: int
    categories: int
    version: int = SEED_VERSION


_SEED = (
    text("TRUNCATE items, customers, writes, seed_info"),
    text(
        "INSERT INTO customers (id, name, region)"
        # (g / 5): every category of items then spans every region, so the report groups for real.
        " SELECT g, 'customer-' || g, (CAST(:regions AS text[]))[1 + (g / 5) % :region_count]"
        " FROM generate_series(1, :customers) AS g"
    ),
    # Multiplying by primes spreads customers and amounts without any random generator.
    text(
        "INSERT INTO items (id, customer_id, category, amount_cents, created_at, payload)"
        " SELECT g, 1 + (g::bigint * 7919) % :customers, g % :categories,"
        "        100 + (g::bigint * 104729) % 100000,"
        "        timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', md5(g::text)"
        " FROM generate_series(1, :rows) AS g"
    ),
    text(
        "INSERT INTO seed_info (id, rows, customers, categories, version)"
        " VALUES (1, :rows, :customers, :categories, :version)"
    ),
)


def _engine(url: str) -> Engine:
    """A short-lived engine: no pool, each use connects."""
    return create_engine(with_driver(url, "postgresql+psycopg2"), poolclass=pool.NullPool)


def seeded_shape(url: str) -> SeedShape | None:
    """What the database was last seeded with, or None if never."""
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT rows, customers, categories, version FROM seed_info")).first()
    finally:
        engine.dispose()
    return SeedShape(*row) if row else None


def seed(url: str, shape: SeedShape) -> None:
    """Replace the tables' contents with the deterministic data set of ``shape``."""
    values = {
        "rows": shape.rows, "customers": shape.customers, "categories": shape.categories, "version": shape.version,
        "regions": list(REGIONS), "region_count": len(REGIONS),
    }
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            for statement in _SEED:
                connection.execute(statement, values)
        # Fresh statistics, so the planner treats the report query the same on every run.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE customers, items, writes"))
    finally:
        engine.dispose()


def seed_if_needed(url: str, shape: SeedShape) -> bool:
    """Seed unless the database already holds exactly ``shape``; True if it seeded."""
    if seeded_shape(url) == shape:
        return False
    seed(url, shape)
    return True
