"""The FastAPI application: ``uvicorn --factory app.main:create_app``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypedDict

import anyio.to_thread
from fastapi import APIRouter, FastAPI

from app import errors, introspection
from app.completions import CompletionRecorder, CompletionWriter
from app.prepared import ensure_prepared
from app.registry import open_drivers
from app.routes import bench_router
from app.settings import Settings
from app.timing import ServerTiming
from db.drivers.base import DriverInstance


class State(TypedDict):
    """What every request sees as ``request.state``: the settings and the open drivers."""

    settings: Settings
    drivers: dict[str, DriverInstance]


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        # Refuse a database `iobench prepare` never migrated, rather than answer 500 on every route.
        await ensure_prepared(settings)
        # The limiter is per event loop; setting it here sizes the pool `def` routes run in.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_tokens
        drivers = open_drivers(settings)
        await asyncio.gather(*(driver.start() for driver in drivers.values()))
        try:
            yield {"settings": settings, "drivers": drivers}
        finally:
            await asyncio.gather(*(driver.stop() for driver in drivers.values()), return_exceptions=True)

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; with no arguments, settings come from the environment."""
    settings = settings or Settings()
    app = FastAPI(
        title="iobench",
        summary="The FastAPI async article's four route styles, beside the same routes on real Postgres and file drivers.",
        version="0.1.0",
        lifespan=_lifespan(settings),
    )
    errors.install(app)
    app.add_middleware(ServerTiming)
    if settings.completions_dir is not None:
        # Added last, so it wraps the other middleware: a completion is recorded once its last byte left them.
        app.add_middleware(CompletionRecorder, writer=CompletionWriter(settings.completions_dir))
    for router in (introspection.router, bench_router(settings)):
        _add_routes(app, router)
    return app


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put ``router``'s routes on the app's own router, where each request is matched once.

    ``include_router`` keeps the router as one entry that FastAPI matches route by route twice per
    request (to choose it, then again inside it), a few microseconds per route each time: with ~80
    bench routes that was a tenth of a lookup's service CPU, and more for the routes registered last.
    """
    app.router.routes.extend(router.routes)
