"""The service answers every catalogue scenario, and says what it runs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.catalogue import SCENARIOS, STEPS, Scenario
from app.data_folder import SEED_FILES
from app.settings import Settings

DB_SCENARIOS = [s for s in SCENARIOS if s.workload.name in {"pg_sleep", "lookup", "report", "write"}]


def _query(scenario: Scenario) -> dict[str, object]:
    return {"seconds": 0.001} if "seconds" in scenario.workload.parameters else {}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
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
            assert set(result) == {"id", "customer_id", "category", "amount_cents", "created_at"}
        case "report":
            assert result and {row["region"] for row in result} <= {"central", "east", "north", "south", "west"}
            assert all(row["orders"] > 0 for row in result)
        case "write":
            assert 0 <= result["slot"] < settings.write_slots and result["note"] == "iobench" and result["hits"] >= 2
        case "file":
            assert result == {"name": "small.bin", "bytes": SEED_FILES["small.bin"]}


def test_large_file_is_read_whole(client: TestClient) -> None:
    for path in ("/bench/file/async/aiofiles", "/bench/file/sync/open", "/bench/file/async/anyio"):
        response = client.get(path, params={"name": "large.bin"})
        assert response.json()["result"] == {"name": "large.bin", "bytes": 8 * 1024 * 1024}


def test_scenarios_endpoint_matches_catalogue(client: TestClient) -> None:
    body = client.get("/scenarios").json()
    assert [s["id"] for s in body["scenarios"]] == [s.id for s in SCENARIOS]
    assert body["scenarios"] == [s.to_dict() for s in SCENARIOS]
    assert set(body["styles"]) == {"sync", "async-blocking", "async", "threadpool", "threadpool-only"}
    cases = {s["article_case"]: s["id"] for s in body["scenarios"] if s["article_case"]}
    assert cases == {1: "wait/sync/time", 2: "wait/async-blocking/time", 3: "wait/async/asyncio", 4: "wait/threadpool/time"}


def test_every_scenario_is_routed(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {s.path for s in SCENARIOS} <= set(paths)


def test_catalogue_covers_the_issue() -> None:
    ids = {s.id for s in SCENARIOS}
    for driver in ("psycopg2", "psycopg3-sync", "sqlalchemy-sync"):
        for workload in ("pg_sleep", "lookup", "report", "write"):
            assert {f"{workload}/sync/{driver}", f"{workload}/async-blocking/{driver}", f"{workload}/threadpool/{driver}"} <= ids
    for driver in ("asyncpg", "psycopg3-async", "sqlalchemy-async"):
        for workload in ("pg_sleep", "lookup", "report", "write"):
            assert f"{workload}/async/{driver}" in ids
    assert "pg_sleep/threadpool-only/psycopg2" in ids
    assert {"file/sync/open", "file/async-blocking/open", "file/async/aiofiles"} <= ids


def test_config_reports_the_live_setup(client: TestClient, settings: Settings) -> None:
    config = client.get("/config").json()
    assert config["threadpool_tokens"] == settings.threadpool_tokens
    assert config["workers"] == 1
    assert config["event_loop"]
    assert set(config["pools"]) == {"psycopg2", "psycopg3-sync", "sqlalchemy-sync", "asyncpg", "psycopg3-async", "sqlalchemy-async"}
    assert all(pool["max"] == settings.pool_max for pool in config["pools"].values())
    assert config["libraries"]["fastapi"] and config["libraries"]["asyncpg"]
    assert config["database"]["max_connections"] > 0
    assert "password" not in config["database_url"] or "***" in config["database_url"]


def test_hello_and_ping(client: TestClient) -> None:
    assert client.get("/ping").json() == {"ok": True}
    assert client.get("/sync").json() == {"message": "Hello World"}
