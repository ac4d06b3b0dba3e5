"""A server that refuses more connections ("too many clients", SQLSTATE 53300) is a 503 on every driver, never a 500.

A role's CONNECTION LIMIT raises the same SQLSTATE as max_connections (superusers ignore both
limits, so the service runs as a role of its own), and a limit of one connection, held by the
test, refuses every driver's first connection.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy.engine import make_url

from app.catalogue import DRIVERS, SCENARIOS, Scenario
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.postgres
LOOKUPS = [s for s in SCENARIOS if s.workload.name == "lookup" and s.style in ("sync", "async") and s.driver.pooled]


@pytest.fixture(scope="module")
def full_database(settings: Settings) -> Iterator[Settings]:
    """The session's database, as a role allowed one connection, which this fixture holds."""
    assert settings.database_url is not None
    role = sql.Identifier(f"iobench_limited_{secrets.token_hex(4)}")
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 1").format(role))
        admin.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role))
        limited = make_url(settings.database_url).set(username=role.as_string(admin).strip('"')).render_as_string(False)
        try:
            with psycopg.connect(limited.replace("postgresql+psycopg://", "postgresql://"), autocommit=True):
                yield settings.model_copy(update={"database_url": limited, "pool_min": 0, "acquire_timeout": 2})
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(role))
            admin.execute(sql.SQL("DROP ROLE {}").format(role))


@pytest.mark.parametrize("scenario", LOOKUPS, ids=lambda s: s.id)
def test_too_many_clients_is_a_503_naming_the_driver(full_database: Settings, scenario: Scenario) -> None:
    with TestClient(create_app(full_database)) as client:
        response = client.get(scenario.path, params={"id": 1})
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "database_unavailable" and body["driver"] == scenario.driver.name
    assert "too many connections" in body["detail"], body["detail"]


def test_every_pooled_driver_is_covered() -> None:
    assert {s.driver.name for s in LOOKUPS} == {d.name for d in DRIVERS if d.pooled}
