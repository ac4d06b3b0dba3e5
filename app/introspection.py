"""/scenarios and /config: what the service runs, so every report records the setup it measured."""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
from fastapi import APIRouter, Request

from app.catalogue import DRIVERS, SCENARIOS, WORKLOADS, Style
from app.settings import Settings
from db.drivers.base import DriverInstance
from db.url import masked

#: What every route runs on, whatever its driver; the drivers' own packages come from the catalogue.
SERVICE_LIBRARIES = ("fastapi", "starlette", "uvicorn", "anyio", "pydantic", "uvloop")


@runtime_checkable
class _ServerFacts(Protocol):
    async def server_facts(self) -> dict[str, Any]: ...


def libraries() -> tuple[str, ...]:
    """The service's packages, then every driver's, each once."""
    return tuple(dict.fromkeys(SERVICE_LIBRARIES + tuple(name for d in DRIVERS for name in d.distributions)))


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in libraries():
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def catalogue() -> dict[str, Any]:
    return {
        "scenarios": [scenario.to_dict() for scenario in SCENARIOS],
        "styles": {str(style): style.explanation for style in Style},
        "workloads": {workload.name: workload.description for workload in WORKLOADS},
        "drivers": [driver.to_dict() for driver in DRIVERS],
    }


async def _database_facts(drivers: dict[str, DriverInstance]) -> dict[str, Any]:
    """Server version and max_connections, asked through asyncpg; an outage is reported, not raised."""
    asker = drivers.get("asyncpg")
    # `is None` first: mypy (2.4) cannot narrow an Optional protocol to another protocol.
    if asker is None or not isinstance(asker, _ServerFacts):
        return {"error": "no driver to ask the server with"}
    try:
        return await asyncio.wait_for(asker.server_facts(), timeout=2)
    except Exception as exc:  # noqa: BLE001 - /config must answer even when the database does not
        return {"error": f"{type(exc).__name__}: {exc}"}


def live_config(settings: Settings, drivers: dict[str, DriverInstance]) -> dict[str, Any]:
    limiter = anyio.to_thread.current_default_thread_limiter()
    return {
        "pid": os.getpid(),
        "workers": settings.workers,
        "event_loop": type(asyncio.get_running_loop()).__module__ + "." + type(asyncio.get_running_loop()).__name__,
        "threadpool_tokens": limiter.total_tokens,
        "threadpool_busy": limiter.borrowed_tokens,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "database_url": masked(settings.url),
        # Where a harness that did not start this service finds its completion log (app/completions.py).
        "completions_dir": str(settings.completions_dir.resolve()) if settings.completions_dir else None,
        "pools": {name: info for name, driver in drivers.items() if (info := driver.pool_info()) is not None},
        "pool_max_total": sum(settings.pool_size(d.name).max for d in DRIVERS if d.pooled),
        "libraries": library_versions(),
        "settings": settings.model_dump(mode="json", exclude={"database_url"}),
    }


router = APIRouter(tags=["introspection"])


@router.get("/scenarios", summary="The scenario catalogue")
async def scenarios() -> dict[str, Any]:
    return catalogue()


@router.get("/config", summary="The live configuration: threadpool, pools, workers, versions")
async def config(request: Request) -> dict[str, Any]:
    drivers = request.state.drivers
    return {**live_config(request.state.settings, drivers), "database": await _database_facts(drivers)}
