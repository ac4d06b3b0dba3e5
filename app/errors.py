"""Error responses: every failure is JSON, and a database that cannot serve is a quick 503."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from db.errors import DatabaseUnavailable


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatabaseUnavailable)
    return JSONResponse(
        {"error": exc.reason, "driver": exc.driver, "detail": exc.detail},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(DatabaseUnavailable, database_unavailable)
