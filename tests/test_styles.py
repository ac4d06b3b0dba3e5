"""The route styles behave as the article says, on a real server (a correctness check, not a benchmark).

Twenty concurrent requests, each doing two 0.05 s waits: an ``async def`` route that awaits
runs them together (about 0.1 s plus overhead), one that blocks the event loop runs them one
after the other (at least 20 x 0.1 s = 2 s). Only wide ratios are asserted, never absolute times.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.settings import Settings
from db.drivers.base import PoolSize
from loadtests.server import ServiceProcess

pytestmark = pytest.mark.postgres  # every test here runs against the session's test database

CONCURRENCY = 20
SECONDS = 0.05
RATIO = 5


@pytest.fixture(scope="module")
def styles_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # asyncpg must hold 20 connections for 20 requests at once; every other pool stays small, so the
    # server's 100 connections (shared with whatever else runs) are not at risk.
    wide = settings.model_copy(
        update={"pool_min": 1, "pool_max": 5, "pools": {"asyncpg": PoolSize(min=1, max=CONCURRENCY)},
                "threadpool_tokens": 40, "port": 0}
    )
    with ServiceProcess(wide, tmp_path_factory.mktemp("styles") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
async def http(styles_server: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=CONCURRENCY * 2, max_keepalive_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(base_url=styles_server.url, timeout=60, limits=limits) as client:
        # Warm up: open the client's keep-alive connections and asyncpg's 20 pooled connections.
        await burst(client, f"/bench/pg_sleep/async/asyncpg?seconds={SECONDS}")
        await burst(client, f"/bench/wait/async/asyncio?seconds={SECONDS}")
        assert (await client.get(f"/bench/pg_sleep/async-blocking/psycopg2?seconds={SECONDS}")).status_code == 200
        yield client


async def burst(client: httpx.AsyncClient, path: str) -> float:
    """Wall time of CONCURRENCY requests to ``path`` sent at once."""
    started = time.monotonic()
    responses = await asyncio.gather(*(client.get(path) for _ in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    failed = [response.text for response in responses if response.status_code != 200]
    assert not failed, failed[:1]
    return elapsed


async def best_of(client: httpx.AsyncClient, path: str, runs: int = 3) -> float:
    """The fastest of a few bursts: client and scheduling overhead only ever add time."""
    return min([await burst(client, path) for _ in range(runs)])


async def test_blocking_the_loop_serialises_sleeps(http: httpx.AsyncClient) -> None:
    awaited = await best_of(http, f"/bench/wait/async/asyncio?seconds={SECONDS}")
    blocking = await burst(http, f"/bench/wait/async-blocking/time?seconds={SECONDS}")
    assert blocking >= RATIO * awaited, f"async-blocking {blocking:.3f} s vs async {awaited:.3f} s"


async def test_blocking_the_loop_serialises_queries(http: httpx.AsyncClient) -> None:
    awaited = await best_of(http, f"/bench/pg_sleep/async/asyncpg?seconds={SECONDS}")
    blocking = await burst(http, f"/bench/pg_sleep/async-blocking/psycopg2?seconds={SECONDS}")
    assert blocking >= RATIO * awaited, f"psycopg2 async-blocking {blocking:.3f} s vs asyncpg {awaited:.3f} s"


def _ping_until(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """/ping over and over from another thread, so the load's own client work does not count."""
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/ping")  # connect first: only the server's answer time is measured
        while not stop.is_set():
            started = time.monotonic()
            assert client.get("/ping").status_code == 200
            latencies.append(time.monotonic() - started)


async def ping_latency_under(http: httpx.AsyncClient, url: str, path: str) -> float:
    """The worst /ping latency while CONCURRENCY requests to ``path`` are being served."""
    stop = threading.Event()
    latencies: list[float] = []
    pinger = threading.Thread(target=_ping_until, args=(url, stop, latencies), daemon=True)
    pinger.start()
    try:
        await asyncio.sleep(0.05)
        await burst(http, path)
    finally:
        stop.set()
        await asyncio.to_thread(pinger.join, 30)
    assert latencies
    return max(latencies)


async def test_a_blocked_loop_delays_ping(http: httpx.AsyncClient, styles_server: ServiceProcess) -> None:
    """The worst ping under blocking load is typically 40-200x the worst under awaiting load.

    The maximum, not the median: under blocking load a ping that lands right as one handler
    ends may be answered quickly, but some ping always waits out the queued handlers.
    """
    awaited = await ping_latency_under(http, styles_server.url, f"/bench/wait/async/asyncio?seconds={SECONDS}")
    blocking = await ping_latency_under(http, styles_server.url, f"/bench/wait/async-blocking/time?seconds={SECONDS}")
    assert blocking > RATIO * awaited, f"/ping: {blocking:.3f} s under async-blocking load vs {awaited:.3f} s under async"
