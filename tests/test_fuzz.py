"""Fuzz the service's OpenAPI schema with schemathesis: no 5xx but the documented 503, responses as documented.

Every operation (each scenario's route, /scenarios, /config and /ping) gets schemathesis's
coverage cases (boundary and invalid values) and a few random examples, positive and negative, against the app in-process on the real test database,
with every default check: no server error, status codes, content types, headers and bodies as
documented, schema-valid requests accepted, invalid ones rejected. The only 5xx allowed is 503
(the database could not serve), and status_code_conformance allows it only where documented.
The waits are capped at 20 ms here, so the fuzz never sleeps long whatever ``seconds`` it draws.

Bugs it found, now fixed: a NUL in ``note`` reached Postgres and failed in every driver (500);
404s (no such item, no such file), 403 (symlink out) and the data folder's own 422 body were undocumented.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import TEST_SEED
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from app.catalogue import SCENARIOS
from app.main import create_app
from app.settings import Settings

# Hypothesis caches constants it finds in the source; keep that out of the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "iobench-hypothesis")

FUZZ_MAX_WAIT = 0.02
SHAPE: dict[str, Any] = {"max_wait_seconds": FUZZ_MAX_WAIT, "default_wait_seconds": 0.01, **TEST_SEED}
CONFIG = SchemathesisConfig.from_dict({"checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}}})

# The schema comes from an app that is never started (no database at collection time); the
# requests go to an app of the same shape on the session's test database (fuzz_client).
OPENAPI = create_app(Settings(_env_file=None, **SHAPE)).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


@pytest.fixture(scope="module")
def fuzz_client(settings: Settings) -> Iterator[asgi.ASGIClient]:
    """The app in-process with its lifespan (pools) started, short waits and pools of two."""
    app = create_app(settings.model_copy(update={**SHAPE, "pool_min": 0, "pool_max": 2}))
    assert app.openapi() == OPENAPI, "the fuzzed schema must be the served one"
    try:
        with asgi.get_client(app) as client:  # type: ignore[arg-type]  # schemathesis types ASGI messages as dict, Starlette as MutableMapping
            yield client
    finally:
        asgi.shutdown_lifespans()  # close the pools now, not at interpreter exit


@schema.parametrize()
@hypothesis_settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@pytest.mark.postgres
def test_fuzz(case: schemathesis.Case[Any], fuzz_client: asgi.ASGIClient) -> None:
    case.call_and_validate(session=fuzz_client)


def test_every_operation_is_fuzzed_and_documents_its_errors() -> None:
    operations = {path: item["get"] for path, item in OPENAPI["paths"].items()}
    assert set(operations) == {s.path for s in SCENARIOS} | {"/scenarios", "/config", "/ping"}
    assert all(len(item) == 1 for item in OPENAPI["paths"].values())
    for scenario in SCENARIOS:
        responses = operations[scenario.path]["responses"]
        pooled = any(driver.pooled for driver in scenario.drivers)
        assert ("503" in responses) == pooled, scenario.id
        if pooled:
            body = responses["503"]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/DatabaseUnavailableBody"}, scenario.id
        if scenario.workload.name in ("lookup", "file"):
            assert "404" in responses, scenario.id
    assert OPENAPI["components"]["schemas"]["DatabaseUnavailableBody"]["required"] == ["error", "driver", "detail"]


WRITE_PATHS = [s.path for s in SCENARIOS if s.workload.name == "write"]


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.postgres
def test_a_nul_in_note_is_a_422_not_a_500(client: TestClient, path: str) -> None:
    """Found by the fuzz: Postgres text cannot hold NUL, and every driver raised on it."""
    for note in ("\x00", "before\x00after"):
        response = client.get(path, params={"slot": 0, "note": note})
        assert response.status_code == 422, response.text
        assert [error["loc"] for error in response.json()["detail"]] == [["query", "note"]]
    assert client.get(path, params={"slot": 0, "note": "tab\tnewline\nunicode \u00e9\u4e2d"}).status_code == 200
