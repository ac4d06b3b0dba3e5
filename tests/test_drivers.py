"""Cross-driver equivalence: every Postgres driver path returns the same rows.

Every driver runs the same statement (db/queries.py), so a lookup, a report and a write must
give the same answer whichever way they went. The expected values are computed here from the
seed's formulas (db/seed.py), not read back through one of the drivers under test.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, overload

import asyncpg
import psycopg
import psycopg2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.catalogue import DRIVERS, Kind
from app.registry import open_driver
from app.settings import Settings
from db import queries
from db.drivers.base import DriverInstance
from db.queries import Query
from db.seed import REGIONS
from db.url import with_driver

DB_DRIVERS = [driver for driver in DRIVERS if driver.pooled]
DRIVER_NAMES = [driver.name for driver in DB_DRIVERS]
# Slots no HTTP route can reach (routes draw from 0..write_slots-1), so other tests never touch them.
PRIVATE_SLOT = 1_000_000


def test_the_catalogue_has_the_six_driver_paths() -> None:
    """The catalogue may grow; these six are what the README and the findings compare."""
    assert {"psycopg2", "asyncpg", "psycopg3-sync", "psycopg3-async", "sqlalchemy-sync", "sqlalchemy-async"} <= set(DRIVER_NAMES)


# --- expected values, from the seed's formulas --------------------------------------------


def expected_item(settings: Settings, g: int) -> dict[str, Any]:
    return {
        "id": g,
        "customer_id": 1 + (g * 7919) % settings.customers,
        "category": g % settings.categories,
        "amount_cents": 100 + (g * 104729) % 100_000,
        "created_at": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=g),
    }


def expected_report(settings: Settings, category: int) -> list[dict[str, Any]]:
    groups: dict[str, list[int]] = {}
    for g in range(1, settings.seed_rows + 1):
        item = expected_item(settings, g)
        if item["category"] == category:
            region = REGIONS[(item["customer_id"] // 5) % len(REGIONS)]  # (regions)[1 + (id / 5) % 5], 1-based
            groups.setdefault(region, []).append(item["amount_cents"])
    return [
        {
            "region": region,
            "orders": len(amounts),
            "total_cents": sum(amounts),
            # Postgres rounds numeric halves away from zero.
            "avg_cents": int((Decimal(sum(amounts)) / len(amounts)).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        }
        for region, amounts in sorted(groups.items())
    ]


def normalised(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row with its datetimes as UTC instants.

    The drivers legitimately differ in the tzinfo object they attach to a timestamptz
    (asyncpg: datetime.timezone.utc; psycopg 3: a ZoneInfo of the session TimeZone;
    psycopg2: its own fixed-offset tzinfo), so datetimes are compared as UTC instants.
    Everything else (ints, text) must already be identical, type included.
    """
    if row is None:
        return None
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            assert value.tzinfo is not None, f"{key} came back naive: {value!r}"
            value = value.astimezone(UTC)
        out[key] = value
    return out


@overload
def typed(row: dict[str, Any]) -> dict[str, Any]: ...


@overload
def typed(row: None) -> None: ...


def typed(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """Values with their types, so 5 == 5.0 or a Decimal does not pass for an int."""
    return None if row is None else {key: (type(value).__name__, value) for key, value in row.items()}


# --- the drivers, used directly -----------------------------------------------------------


@pytest.fixture(scope="module")
async def drivers(settings: Settings) -> AsyncIterator[dict[str, DriverInstance]]:
    instances = {driver.name: open_driver(driver, settings) for driver in DB_DRIVERS}
    for instance in instances.values():
        await instance.start()
    try:
        yield instances
    finally:
        for instance in instances.values():
            await instance.stop()


async def call(instance: Any, operation: str, **kwargs: Any) -> Any:
    """Call a sync driver's method directly, or await an async driver's."""
    result = getattr(instance, operation)(**kwargs)
    if instance.kind == Kind.ASYNC:
        assert inspect.isawaitable(result)
        return await result
    assert not inspect.isawaitable(result)
    return result


def lookup_ids(settings: Settings) -> list[int]:
    return [1, 2, 3, 7, settings.seed_rows // 2, settings.seed_rows - 1, settings.seed_rows]


@pytest.mark.postgres
async def test_lookup_is_the_same_through_every_driver(drivers: dict[str, Any], settings: Settings) -> None:
    for item_id in lookup_ids(settings):
        expected = typed(expected_item(settings, item_id))
        for name, instance in drivers.items():
            row = await call(instance, "lookup", item_id=item_id)
            assert list(row) == list(queries.LOOKUP_COLUMNS), name
            assert typed(normalised(row)) == expected, f"{name}, id={item_id}"


@pytest.mark.postgres
async def test_lookup_of_a_missing_id_is_none_everywhere(drivers: dict[str, Any], settings: Settings) -> None:
    for name, instance in drivers.items():
        assert await call(instance, "lookup", item_id=settings.seed_rows + 1) is None, name


@pytest.mark.postgres
async def test_report_is_the_same_through_every_driver(drivers: dict[str, Any], settings: Settings) -> None:
    for category in range(settings.categories):
        expected = [typed(row) for row in expected_report(settings, category)]
        assert expected and sum(row["orders"][1] for row in expected) > 0
        for name, instance in drivers.items():
            rows = await call(instance, "report", category=category)
            assert [typed(dict(row)) for row in rows] == expected, f"{name}, category={category}"
            assert all(list(row) == list(queries.REPORT_COLUMNS) for row in rows), name


@pytest.mark.postgres
async def test_report_of_an_empty_category_is_empty_everywhere(drivers: dict[str, Any], settings: Settings) -> None:
    for name, instance in drivers.items():
        assert await call(instance, "report", category=settings.categories + 7) == [], name


def _writes_row(settings: Settings, slot: int) -> tuple[Any, ...] | None:
    with psycopg.connect(settings.url) as connection:
        return connection.execute("SELECT slot, note, hits FROM writes WHERE slot = %s", (slot,)).fetchone()


def _delete_slots(settings: Settings, first: int, last: int) -> None:
    with psycopg.connect(settings.url, autocommit=True) as connection:
        connection.execute("DELETE FROM writes WHERE slot BETWEEN %s AND %s", (first, last))


@pytest.mark.postgres
async def test_write_is_the_same_through_every_driver(drivers: dict[str, Any], settings: Settings) -> None:
    shared = PRIVATE_SLOT
    own = {name: PRIVATE_SLOT + 1 + index for index, name in enumerate(drivers)}
    _delete_slots(settings, PRIVATE_SLOT, PRIVATE_SLOT + 100)
    try:
        # The same upsert on one slot, driver after driver: one row, its hits counting up.
        for hits, (name, instance) in enumerate(drivers.items(), start=1):
            row = await call(instance, "write", slot=shared, note="shared note")
            assert typed(dict(row)) == typed({"slot": shared, "note": "shared note", "hits": hits}), name
            assert _writes_row(settings, shared) == (shared, "shared note", hits), name
        # A first write of a fresh slot returns the same row from every driver.
        for name, instance in drivers.items():
            row = await call(instance, "write", slot=own[name], note=f"from {name}")
            assert typed(dict(row)) == typed({"slot": own[name], "note": f"from {name}", "hits": 1}), name
            assert list(row) == list(queries.WRITE_COLUMNS), name
            assert _writes_row(settings, own[name]) == (own[name], f"from {name}", 1), name
    finally:
        _delete_slots(settings, PRIVATE_SLOT, PRIVATE_SLOT + 100)


@pytest.mark.postgres
async def test_pg_sleep_returns_its_argument_everywhere(drivers: dict[str, Any]) -> None:
    for name, instance in drivers.items():
        assert await call(instance, "pg_sleep", seconds=0.001) == 0.001, name


# --- the same, through the HTTP routes ------------------------------------------------------


def _route_paths(workload: str) -> list[str]:
    """One path per driver serving ``workload``: its plain style (sync for sync drivers, async for async ones)."""
    return [
        f"/bench/{workload}/{'async' if driver.kind is Kind.ASYNC else 'sync'}/{driver.name}"
        for driver in DB_DRIVERS if workload in {w.name for w in driver.workloads}
    ]


@pytest.mark.postgres
def test_lookup_routes_agree(client: TestClient, settings: Settings) -> None:
    for item_id in lookup_ids(settings):
        expected = expected_item(settings, item_id)
        for path in _route_paths("lookup"):
            response = client.get(path, params={"id": item_id})
            assert response.status_code == 200, (path, response.text)
            result = response.json()["result"]
            # JSON carries the datetime as ISO 8601 with its driver's offset: compare instants.
            result["created_at"] = datetime.fromisoformat(result["created_at"]).astimezone(UTC)
            assert result == expected, (path, item_id)


@pytest.mark.postgres
def test_report_routes_agree(client: TestClient, settings: Settings) -> None:
    for category in range(settings.categories):
        expected = expected_report(settings, category)
        for path in _route_paths("report"):
            response = client.get(path, params={"category": category})
            assert response.status_code == 200, (path, response.text)
            assert response.json()["result"] == expected, (path, category)


@pytest.mark.postgres
def test_write_routes_agree(client: TestClient, settings: Settings) -> None:
    slot = settings.write_slots - 1
    before = _writes_row(settings, slot)
    hits = before[2] if before else 0
    for path in _route_paths("write"):
        response = client.get(path, params={"slot": slot, "note": "via http"})
        assert response.status_code == 200, (path, response.text)
        hits += 2  # every request does its step twice
        assert response.json()["result"] == {"slot": slot, "note": "via http", "hits": hits}, path
    assert _writes_row(settings, slot) == (slot, "via http", hits)


# --- db/queries.py: one statement, three placeholder styles -------------------------------


def test_query_conversion() -> None:
    query = Query("SELECT :a + :b WHERE x = :a AND y = :c_2")
    assert query.params == ("a", "b", "c_2")
    assert query.pyformat == "SELECT %(a)s + %(b)s WHERE x = %(a)s AND y = %(c_2)s"
    assert query.numeric == "SELECT $1 + $2 WHERE x = $1 AND y = $3"
    assert query.named == "SELECT :a + :b WHERE x = :a AND y = :c_2"
    assert query.positional({"c_2": 3, "b": 2, "a": 1, "unused": 9}) == [1, 2, 3]


def test_query_leaves_casts_alone() -> None:
    query = Query("SELECT :x::text, CAST(:y AS int)::bigint, '2024-01-01 12:30'::timestamptz, now()::date")
    assert query.params == ("x", "y")
    assert query.pyformat == "SELECT %(x)s::text, CAST(%(y)s AS int)::bigint, '2024-01-01 12:30'::timestamptz, now()::date"
    assert query.numeric == "SELECT $1::text, CAST($2 AS int)::bigint, '2024-01-01 12:30'::timestamptz, now()::date"
    # text() would read ":x::text" as no parameter at all; "\:" is its escape for a literal colon.
    assert query.sqlalchemy == "SELECT :x\\:\\:text, CAST(:y AS int)::bigint, '2024-01-01 12:30'::timestamptz, now()::date"


def test_query_doubles_a_literal_percent_for_psycopg_only() -> None:
    query = Query("SELECT :a % 3, 'a%' LIKE :b")
    assert query.pyformat == "SELECT %(a)s %% 3, 'a%%' LIKE %(b)s"
    assert query.numeric == "SELECT $1 % 3, 'a%' LIKE $2"
    assert query.sqlalchemy == query.named == "SELECT :a % 3, 'a%' LIKE :b"  # text() escapes % for its driver itself


def test_query_without_parameters() -> None:
    query = Query("SELECT 1::int")
    assert query.params == () and query.positional({}) == []
    assert query.pyformat == query.numeric == query.sqlalchemy == "SELECT 1::int"


def test_the_real_queries_convert() -> None:
    assert queries.LOOKUP.params == ("item_id",) and "%(item_id)s" in queries.LOOKUP.pyformat and "$1" in queries.LOOKUP.numeric
    assert queries.WRITE.params == ("slot", "note")
    assert "VALUES ($1, $2)" in queries.WRITE.numeric and "VALUES (%(slot)s, %(note)s)" in queries.WRITE.pyformat
    for query in (queries.PG_SLEEP, queries.LOOKUP, queries.REPORT, queries.WRITE, queries.SERVER_FACTS):
        assert ":" not in query.numeric.replace("::", "")
        assert ":" not in query.pyformat.replace("::", "")


@pytest.mark.postgres
async def test_converted_query_runs_the_same_on_every_driver(settings: Settings) -> None:
    """Repeated names, casts and a literal % (modulo) survive conversion, on real servers."""
    query = Query("SELECT :a::int % 3 AS r, :b::text AS b, :a::int + 1 AS s, '100%' AS lit")
    values = {"a": 7, "b": "x"}
    expected = (1, "x", 8, "100%")
    url = settings.url
    with psycopg.connect(url) as connection:
        assert connection.execute(query.pyformat, values).fetchone() == expected
    connection2 = psycopg2.connect(url)
    try:
        with connection2.cursor() as cursor:
            cursor.execute(query.pyformat, values)
            assert cursor.fetchone() == expected
    finally:
        connection2.close()
    connection3 = await asyncpg.connect(url)
    try:
        row = await connection3.fetchrow(query.numeric, *query.positional(values))
        assert row is not None
        assert tuple(row) == expected
    finally:
        await connection3.close()
    # SQLAlchemy's text() takes the :name form (casts escaped), on psycopg2 and on asyncpg.
    engine = create_engine(with_driver(url, "postgresql+psycopg2"), poolclass=NullPool)
    try:
        with engine.connect() as connection4:
            assert tuple(connection4.execute(text(query.sqlalchemy), values).one()) == expected
    finally:
        engine.dispose()
    async_engine = create_async_engine(with_driver(url, "postgresql+asyncpg"), poolclass=NullPool)
    try:
        async with async_engine.connect() as connection5:
            assert tuple((await connection5.execute(text(query.sqlalchemy), values)).one()) == expected
    finally:
        await async_engine.dispose()
