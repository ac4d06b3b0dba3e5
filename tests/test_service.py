"""The service answers every catalogue scenario, and says what it runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from app import timing
from app.catalogue import ARTICLE_CASES, DRIVERS, FILE, SCENARIOS, STEPS, Scenario, Style
from app.data_folder import LARGE_FILE, SEED_FILES, SMALL_FILE
from app.introspection import SERVICE_LIBRARIES
from app.main import create_app
from app.settings import Settings
from db.queries import LOOKUP_COLUMNS
from db.seed import REGIONS


def _query(scenario: Scenario) -> dict[str, object]:
    return {"seconds": 0.001} if "seconds" in scenario.workload.parameters else {}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
@pytest.mark.postgres
def test_every_scenario_answers(client: TestClient, settings: Settings, scenario: Scenario) -> None:
    response = client.get(scenario.path, params=_query(scenario))
    assert response.status_code == 200, response.text
    body = response.json()
    if scenario.workload.name == "hello":
        assert body == {"message": "Hello World"}
        return
    assert body["scenario"] == scenario.id
    assert body["steps"] == STEPS
    result = body["result"]
    match scenario.workload.name:
        case "wait" | "pg_sleep":
            assert result == 0.001
        case "lookup":
            assert 1 <= result["id"] <= settings.seed_rows
            assert list(result) == list(LOOKUP_COLUMNS)
            # FastAPI's serialiser writes the timestamptz as ISO 8601 with its offset.
            assert datetime.fromisoformat(result["created_at"]).tzinfo is not None, result
        case "report":
            assert result and {row["region"] for row in result} <= set(REGIONS)
            assert all(row["orders"] > 0 for row in result)
        case "write":
            assert 0 <= result["slot"] < settings.write_slots and result["note"] == "iobench" and result["hits"] >= 2
        case "file":
            assert result == {"name": SMALL_FILE, "bytes": SEED_FILES[SMALL_FILE]}


@pytest.mark.postgres
def test_large_file_is_read_whole(client: TestClient) -> None:
    for scenario in (s for s in SCENARIOS if s.workload is FILE and s.style in (Style.SYNC, Style.ASYNC)):
        response = client.get(scenario.path, params={"name": LARGE_FILE})
        assert response.json()["result"] == {"name": LARGE_FILE, "bytes": SEED_FILES[LARGE_FILE]}, scenario.id


@pytest.mark.postgres
def test_scenarios_endpoint_matches_catalogue(client: TestClient) -> None:
    body = client.get("/scenarios").json()
    assert [s["id"] for s in body["scenarios"]] == [s.id for s in SCENARIOS]
    assert body["scenarios"] == [s.to_dict() for s in SCENARIOS]
    assert body["drivers"] == [d.to_dict() for d in DRIVERS]
    assert set(body["styles"]) == {str(style) for style in Style}
    cases = {s["id"]: s["article_case"] for s in body["scenarios"] if s["article_case"]}
    assert cases == ARTICLE_CASES
    assert sorted(cases.values()) == [1, 2, 3, 4]


@pytest.mark.postgres
def test_every_scenario_is_routed(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {s.path for s in SCENARIOS} <= set(paths)


def test_catalogue_covers_the_article_on_every_required_driver() -> None:
    """The catalogue may grow; the article's styles on these drivers are what the findings need."""
    ids = {s.id for s in SCENARIOS}
    for driver in ("psycopg2", "psycopg3-sync", "sqlalchemy-sync"):
        for workload in ("pg_sleep", "lookup", "report", "write"):
            assert {f"{workload}/sync/{driver}", f"{workload}/async-blocking/{driver}", f"{workload}/threadpool/{driver}"} <= ids
    for driver in ("asyncpg", "psycopg3-async", "sqlalchemy-async"):
        for workload in ("pg_sleep", "lookup", "report", "write"):
            assert f"{workload}/async/{driver}" in ids
    assert "pg_sleep/threadpool-only/psycopg2" in ids
    assert {"file/sync/open", "file/async-blocking/open", "file/async/aiofiles"} <= ids


@pytest.mark.postgres
def test_config_reports_the_live_setup(client: TestClient, settings: Settings) -> None:
    config = client.get("/config").json()
    assert config["threadpool_tokens"] == settings.threadpool_tokens
    assert config["workers"] == 1
    assert config["event_loop"]
    assert set(config["pools"]) == {driver.name for driver in DRIVERS if driver.pooled}
    assert all(pool["max"] == settings.pool_max for pool in config["pools"].values())
    distributions = {name for driver in DRIVERS for name in driver.distributions}
    assert set(config["libraries"]) == set(SERVICE_LIBRARIES) | distributions
    assert all(config["libraries"][name] for name in distributions), config["libraries"]
    assert config["database"]["max_connections"] > 0
    assert config["completions_dir"] is None  # no completion log unless asked for (tests/test_completions.py)
    assert "password" not in config["database_url"] or "***" in config["database_url"]


@pytest.mark.postgres
def test_config_reports_each_pool_truthfully(settings: Settings) -> None:
    """Every pool holds its minimum once started (SQLAlchemy's QueuePools too, which have none of their
    own), never more than its maximum, and says which configuration it runs."""
    wide = settings.model_copy(update={"pool_min": 2, "pool_max": 3})
    with TestClient(create_app(wide)) as client:
        deadline = time.monotonic() + 10
        while True:
            pools = client.get("/config").json()["pools"]
            if all(pool["open"] >= 2 for pool in pools.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    for driver in (d for d in DRIVERS if d.pooled):
        pool = pools[driver.name]
        assert (pool["min"], pool["max"]) == (2, 3), pool
        assert 2 <= pool["open"] <= 3, pool
        assert pool["min_policy"], pool
        assert pool["configuration"] == ("driver defaults" if driver.defaults_of else "equal work"), pool
    # An alternative_to entry is its driver on another pool, which /config names.
    assert pools["psycopg2-threaded"]["kind"] == "psycopg2.pool.ThreadedConnectionPool"
    assert pools["psycopg2"]["kind"] == "sqlalchemy.pool.QueuePool"


@pytest.mark.postgres
def test_hello_and_ping(client: TestClient) -> None:
    assert client.get("/ping").json() == {"ok": True}
    assert client.get("/sync").json() == {"message": "Hello World"}


def test_every_route_is_matched_on_the_apps_own_router() -> None:
    """No included router: FastAPI matches one route by route twice per request, a cost that grows with
    a route's place in the catalogue and so would differ between the scenarios being compared."""
    paths = {getattr(route, "path", None) for route in create_app(Settings()).router.routes}
    assert {scenario.path for scenario in SCENARIOS} | {"/scenarios", "/config"} <= paths


@pytest.mark.postgres
def test_thread_trips_are_what_fastapi_makes_of_each_route(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 1 is the handler in the threadpool; FastAPI then validates the dict it returned against the
    inferred response model (``-> dict[str, Any]``) in the threadpool too, as it does for every `def` route
    with a response model: two trips, what a user's typed `def` route pays. The hand-written minimal route
    returns a ``Response`` (one trip), an `async def` route none."""
    trips: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(func, "__name__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    expected = {"/bench/lookup/sync/psycopg2": 2, "/bench/lookup/minimal/psycopg2": 1, "/bench/lookup/async/asyncpg": 0}
    for path, count in expected.items():
        trips.clear()
        assert client.get(path).status_code == 200
        assert len(trips) == count, (path, trips)


@pytest.mark.postgres
def test_server_timing_gives_the_apps_wall_time_and_the_loops_cpu(client: TestClient) -> None:
    """``app`` is S, the model's hold time; ``loop`` the loop's CPU within it: a sleeping route holds
    the loop for its sleeps while spending almost no CPU on them (a wide margin, not a timing)."""
    response = client.get("/bench/wait/async-blocking/time", params={"seconds": 0.05})
    held, worked = timing.parse(response.headers["server-timing"]), timing.parse(response.headers["server-timing"], "loop")
    assert held is not None and worked is not None
    assert held >= 100 and 0 <= worked < held / 5
