"""Error responses: every failure is JSON, and a database that cannot serve is a quick 503."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.data_folder import DataFileError
from db.errors import DatabaseUnavailable, Reason


class ErrorMessage(BaseModel):
    """An error in words (404 no such item or file, 403 outside the data folder): FastAPI's HTTPException body."""

    detail: str


class ValidationErrors(BaseModel):
    """FastAPI's 422 body: one entry per bad parameter, its ``loc`` naming it (``["query", "seconds"]``)."""

    detail: list[dict[str, Any]]


class DatabaseUnavailableBody(BaseModel):
    """The 503 body: which driver could not serve, and why."""

    error: Reason
    driver: str
    detail: str


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatabaseUnavailable)
    return JSONResponse(
        {"error": exc.reason, "driver": exc.driver, "detail": exc.detail},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def data_file_refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DataFileError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)


def install(app: FastAPI) -> None:
    app.add_exception_handler(DatabaseUnavailable, database_unavailable)
    app.add_exception_handler(DataFileError, data_file_refused)
