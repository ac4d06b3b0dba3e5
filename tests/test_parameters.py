"""The routes validate their query themselves (app/parameters.py): the same 422s and the same
OpenAPI parameters as if each had declared its model to FastAPI (``Annotated[Model, Query()]``)."""

from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query, Request
from fastapi.testclient import TestClient

from app.catalogue import SCENARIOS
from app.main import create_app
from app.parameters import WorkloadQuery, workload_queries
from app.settings import Settings

QUERIES = workload_queries(Settings(_env_file=None))

#: Good and bad values of every workload's parameters, the bad ones at and past each bound.
CASES = {
    "wait": ["", "seconds=0", "seconds=-1", "seconds=nan", "seconds=abc", "seconds=1e309", "seconds=9999", "seconds="],
    "lookup": ["", "id=1", "id=0", "id=abc", "id=1.5", f"id={2**31}", "id=1e3", "id=2&id=x", "other=1"],
    "report": ["", "category=0", "category=-1", "category=10000", "category=", "category=1.0"],
    "write": ["", "slot=3&note=x", "slot=-1", "note=a%00b", f"note={'x' * 201}", "slot=abc&note=%00"],
    "file": ["", "name=large.bin", "name=", f"name={'a' * 256}"],
}


def declared_app(model: type[WorkloadQuery]) -> FastAPI:
    """The model declared to FastAPI as a query parameter model: what the routes are compared with."""
    def declared(params: Any) -> Any:
        return params.model_dump()

    declared.__annotations__["params"] = Annotated[model, Query()]  # the model is known only here
    app = FastAPI()
    app.add_api_route("/declared", declared)
    return app


def validated_app(model: type[WorkloadQuery]) -> FastAPI:
    """The model validated as the catalogue's routes do it."""
    app = FastAPI()

    @app.get("/validated")
    def validated(request: Request) -> dict[str, Any]:
        return model.from_query(request.query_params).model_dump()

    return app


@pytest.mark.parametrize("workload", sorted(CASES))
def test_a_query_is_answered_as_fastapi_answers_a_declared_one(workload: str) -> None:
    model = QUERIES[workload]
    with TestClient(declared_app(model)) as declared, TestClient(validated_app(model)) as validated:
        for query in CASES[workload]:
            expected, got = declared.get(f"/declared?{query}"), validated.get(f"/validated?{query}")
            assert (got.status_code, got.json()) == (expected.status_code, expected.json()), query


def test_every_bench_route_documents_its_parameters_as_fastapi_documents_a_declared_model() -> None:
    paths = create_app(Settings(_env_file=None)).openapi()["paths"]
    declared = {name: declared_app(model).openapi()["paths"]["/declared"]["get"]["parameters"]
                for name, model in QUERIES.items()}
    for scenario in SCENARIOS:
        if scenario.workload.name not in QUERIES:
            continue
        operation = paths[scenario.path]["get"]
        assert operation["parameters"] == declared[scenario.workload.name], scenario.id
        assert "422" in operation["responses"], scenario.id

