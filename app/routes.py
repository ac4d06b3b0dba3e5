"""Routes built from the catalogue: one endpoint per scenario, written in its style.

A catalogue route is written the way FastAPI's documentation writes one: its workload's query
model declared as ``Annotated[Model, Query()]`` (FastAPI validates it, answers a bad value with
its 422 and documents the parameters) and a plain dict returned under a ``-> dict[str, Any]``
annotation (FastAPI infers the response model from it, validates the dict and serialises it).
The ``minimal`` routes are the yardstick: hand-written, with ``?id=`` checked by hand and the
JSON written once by the standard library, so their gap to the catalogue's lookup routes is the
framework's share of a request.
"""


import datetime
import json
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.catalogue import HELLO, SCENARIOS, STEPS, Kind, Scenario, Style
from app.errors import DatabaseUnavailableBody, ErrorMessage, ValidationErrors
from app.parameters import PG_INT_MAX, WorkloadQuery, workload_queries
from app.settings import Settings


def _body(scenario: Scenario, result: Any) -> dict[str, Any]:
    if result is None and scenario.workload.name == "lookup":
        raise HTTPException(404, "no such item")
    return {"scenario": scenario.id, "steps": STEPS, "result": result}


def _iso(value: object) -> str:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(body: object, status: int = 200) -> Response:
    """The body serialised once by the standard library, as a hand-written route does it."""
    return Response(json.dumps(body, default=_iso, separators=(",", ":")), status, media_type="application/json")


#: The minimal routes check ?id= themselves; this documents it for /docs and the fuzz tests.
_ID_PARAMETER = {"name": "id", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": PG_INT_MAX},
                 "description": "Item id; random in 1..seed_rows if absent."}


def _minimal_endpoint(scenario: Scenario, settings: Settings) -> Callable[..., Any]:
    """A lookup route the way a performance-minded team writes it: the query read by hand, no dependency
    injection, no response model, the JSON written once; ``def`` for a blocking driver, ``async def`` otherwise."""
    name, seed_rows = scenario.driver.name, settings.seed_rows

    def item_id(request: Request) -> int | Response:
        text = request.query_params.get("id")
        if text is None:
            return random.randint(1, seed_rows)
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= PG_INT_MAX:
            return _json({"detail": [{"loc": ["query", "id"], "msg": f"an id from 1 to {PG_INT_MAX}", "input": text}]}, 422)
        return int(text)

    def answer(result: Any) -> Response:
        if result is None:
            return _json({"detail": "no such item"}, 404)
        return _json({"scenario": scenario.id, "steps": STEPS, "result": result})

    if scenario.driver.kind is Kind.ASYNC:

        async def minimal_async_route(request: Request) -> Response:
            found = item_id(request)
            if isinstance(found, Response):
                return found
            lookup = request.state.drivers[name].lookup
            for _ in range(STEPS):
                result = await lookup(found)
            return answer(result)

        return minimal_async_route

    def minimal_sync_route(request: Request) -> Response:
        found = item_id(request)
        if isinstance(found, Response):
            return found
        lookup = request.state.drivers[name].lookup
        for _ in range(STEPS):
            result = lookup(found)
        return answer(result)

    return minimal_sync_route


def _endpoint(scenario: Scenario, query: type[WorkloadQuery]) -> Callable[..., Any]:
    """The route function for ``scenario``: the same two steps, called the way its style says."""
    operation = scenario.workload.operation
    name = scenario.driver.name
    twin = scenario.twin.name if scenario.twin else None
    if TYPE_CHECKING:
        Params: TypeAlias = WorkloadQuery
    else:  # FastAPI reads the annotation: the workload's own model, known once the route is built
        Params = Annotated[query, Query()]

    if scenario.style is Style.SYNC:

        def sync_route(request: Request, params: Params) -> dict[str, Any]:
            call, kwargs = getattr(request.state.drivers[name], operation), params.call_kwargs()
            for _ in range(STEPS):
                result = call(**kwargs)
            return _body(scenario, result)

        return sync_route

    if scenario.style is Style.ASYNC_BLOCKING:

        async def async_blocking_route(request: Request, params: Params) -> dict[str, Any]:
            call, kwargs = getattr(request.state.drivers[name], operation), params.call_kwargs()
            for _ in range(STEPS):
                result = call(**kwargs)  # blocks the event loop: this is the point
            return _body(scenario, result)

        return async_blocking_route

    if scenario.style is Style.ASYNC:

        async def async_route(request: Request, params: Params) -> dict[str, Any]:
            call, kwargs = getattr(request.state.drivers[name], operation), params.call_kwargs()
            for _ in range(STEPS):
                result = await call(**kwargs)
            return _body(scenario, result)

        return async_route

    if scenario.style is Style.THREADPOOL:

        async def threadpool_route(request: Request, params: Params) -> dict[str, Any]:
            drivers, kwargs = request.state.drivers, params.call_kwargs()
            await run_in_threadpool(getattr(drivers[name], operation), **kwargs)
            result = await getattr(drivers[twin], operation)(**kwargs)
            return _body(scenario, result)

        return threadpool_route

    async def threadpool_only_route(request: Request, params: Params) -> dict[str, Any]:
        call, kwargs = getattr(request.state.drivers[name], operation), params.call_kwargs()
        for _ in range(STEPS):
            result = await run_in_threadpool(call, **kwargs)
        return _body(scenario, result)

    return threadpool_only_route


def _responses(scenario: Scenario) -> dict[int | str, dict[str, Any]]:
    """The error responses ``scenario`` can give besides FastAPI's own 422, for the OpenAPI schema."""
    responses: dict[int | str, dict[str, Any]] = {}
    if scenario.workload.name == "lookup":
        responses[404] = {"model": ErrorMessage, "description": "No item with this id"}
    if scenario.style is Style.MINIMAL:
        # A hand-written route answers a bad ?id= itself, in FastAPI's shape (it declares no parameters to validate).
        responses[422] = {"model": ValidationErrors, "description": "Bad parameter"}
    if scenario.workload.name == "file":
        # resolve_data_file's own refusals say it in words, so a 422 here is either shape.
        responses[422] = {"model": ValidationErrors | ErrorMessage, "description": "Bad parameter, or not a plain file name"}
        responses[403] = {"model": ErrorMessage, "description": "The name resolves outside the data folder"}
        responses[404] = {"model": ErrorMessage, "description": "No such regular file in the data folder"}
    if any(driver.pooled for driver in scenario.drivers):
        responses[503] = {"model": DatabaseUnavailableBody,
                          "description": "Database unreachable, pool exhausted or statement timeout"}
    return responses


def bench_router(settings: Settings) -> APIRouter:
    """Every catalogue scenario as a GET route, plus the article's hello routes and /ping."""
    router = APIRouter()
    queries = workload_queries(settings)

    @router.get("/sync", tags=["article"], summary="Hello world, `def` (the article's first route)")
    def read_sync() -> dict[str, str]:
        return {"message": "Hello World"}

    @router.get("/async", tags=["article"], summary="Hello world, `async def`")
    async def read_async() -> dict[str, str]:
        return {"message": "Hello World"}

    @router.get("/ping", tags=["introspection"], summary="Event-loop latency probe: answers as soon as the loop is free")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    for scenario in SCENARIOS:
        if scenario.workload is HELLO:
            continue
        minimal = scenario.style is Style.MINIMAL
        router.add_api_route(
            scenario.path,
            _minimal_endpoint(scenario, settings) if minimal else _endpoint(scenario, queries[scenario.workload.name]),
            methods=["GET"],
            name=scenario.id,
            summary=scenario.id,
            description=scenario.demonstrates,
            tags=[scenario.workload.name],
            responses=_responses(scenario),
            openapi_extra={"parameters": [_ID_PARAMETER]} if minimal else None,
        )
    return router
