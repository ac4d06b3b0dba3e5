"""The catalogue's routes declare their workload's query model to FastAPI (``Annotated[Model, Query()]``,
app/parameters.py): each answers a query exactly as FastAPI answers one for a route that declares the
model (its 422 body, or 200), and OpenAPI lists the parameters of every bench route."""

from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from app.catalogue import SCENARIOS, Style
from app.main import create_app
from app.parameters import WorkloadQuery, workload_queries
from app.settings import Settings

#: Good and bad values of every workload's parameters, the bad ones at and past each bound.
CASES = {
    "wait": ["", "seconds=0", "seconds=-1", "seconds=nan", "seconds=abc", "seconds=1e309", "seconds=9999", "seconds="],
    "lookup": ["", "id=1", "id=0", "id=abc", "id=1.5", f"id={2**31}", "id=1e3", "id=2&id=x", "other=1"],
    "report": ["", "category=0", "category=-1", "category=10000", "category=", "category=1.0"],
    "write": ["", "slot=3&note=x", "slot=-1", "note=a%00b", f"note={'x' * 201}", "slot=abc&note=%00"],
    "file": ["", "name=large.bin", "name=", f"name={'a' * 256}"],
}
CASES["pg_sleep"] = CASES["wait"]


def declared_app(model: type[WorkloadQuery]) -> FastAPI:
    """A route declaring ``model`` as FastAPI's documentation does, and nothing else: the reference."""
    def declared(params: Any) -> Any:
        return params.model_dump()

    declared.__annotations__["params"] = Annotated[model, Query()]  # the model is known only here
    app = FastAPI()
    app.add_api_route("/declared", declared)
    return app


@pytest.mark.parametrize("workload", sorted(CASES))
@pytest.mark.postgres
def test_every_route_answers_a_query_as_fastapi_answers_a_declared_model(
    client: TestClient, settings: Settings, workload: str
) -> None:
    paths = [s.path for s in SCENARIOS if s.workload.name == workload and s.style is not Style.MINIMAL]
    assert paths
    with TestClient(declared_app(workload_queries(settings)[workload])) as reference:
        for query in CASES[workload]:
            expected = reference.get(f"/declared?{query}")
            assert expected.status_code in (200, 422), (query, expected.text)
            for path in paths:
                got = client.get(f"{path}?{query}")
                if expected.status_code == 422:
                    assert (got.status_code, got.json()) == (422, expected.json()), (path, query)
                else:
                    assert got.status_code == 200, (path, query, got.text)


def test_every_bench_route_documents_its_parameters() -> None:
    """The catalogue's routes as FastAPI documents a declared model (its 422 included); a minimal route its ``id``."""
    paths = create_app(Settings(_env_file=None)).openapi()["paths"]
    declared = {name: declared_app(model).openapi()["paths"]["/declared"]["get"]["parameters"]
                for name, model in workload_queries(Settings(_env_file=None)).items()}
    for scenario in SCENARIOS:
        if scenario.workload.name not in declared:
            continue
        operation = paths[scenario.path]["get"]
        if scenario.style is Style.MINIMAL:
            assert [parameter["name"] for parameter in operation["parameters"]] == ["id"], scenario.id
        else:
            assert operation["parameters"] == declared[scenario.workload.name], scenario.id
        assert "422" in operation["responses"], scenario.id
