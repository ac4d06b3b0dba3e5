"""Two routes in alternating slices, the service's CPU per request of each (loadtests.interleave)."""

from __future__ import annotations

import os

import httpx
import pytest

from loadtests.interleave import measure_interleaved, service_cpu_ns
from loadtests.server import ServiceProcess

CATALOGUE, MINIMAL = "/bench/lookup/async/asyncpg", "/bench/lookup/minimal/asyncpg"


def test_service_cpu_counts_every_thread_in_nanoseconds() -> None:
    before = service_cpu_ns(os.getpid())
    assert before is not None
    sum(range(200_000))
    after = service_cpu_ns(os.getpid())
    assert after is not None and after > before


@pytest.mark.postgres
def test_slices_alternate_and_measure_both_routes(live_server: ServiceProcess) -> None:
    assert live_server.pid is not None
    found = measure_interleaved(live_server.url + CATALOGUE, live_server.url + MINIMAL, "lookup/minimal/asyncpg",
                                live_server.pid, pairs=4, slice_requests=5)
    assert found is not None and len(found.cpu_ms) == 4
    assert all(a > 0 and b > 0 for a, b in found.cpu_ms)
    assert found.to_dict() == {"against": "lookup/minimal/asyncpg", "slice_requests": 5,
                               "cpu_ms": [list(pair) for pair in found.cpu_ms]}


@pytest.mark.postgres
def test_a_slice_with_errors_is_not_a_cost(live_server: ServiceProcess) -> None:
    assert live_server.pid is not None
    with pytest.raises(httpx.HTTPStatusError):
        measure_interleaved(live_server.url + CATALOGUE + "?id=0", live_server.url + MINIMAL, "lookup/minimal/asyncpg",
                            live_server.pid, pairs=2, slice_requests=2)
