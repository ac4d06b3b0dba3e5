"""Little's law per route style (loadtests.model): the bounds, the prediction, the capacities findings derive from."""

from __future__ import annotations

import pytest
from synthetic import SHAPE, TOKENS, make_record

from app.catalogue import SCENARIOS_BY_ID
from loadtests.model import ServerShape, capacity, explain, predict
from loadtests.summary import summarise
from loadtests.work import CpuPerRequest


def test_sync_is_bound_by_the_threadpool() -> None:
    p = predict(SCENARIOS_BY_ID["wait/sync/time"], 25, 0.1, SHAPE)
    assert p.bound == "threadpool" and p.rps == pytest.approx(TOKENS / 0.1)
    assert p.capacity == pytest.approx(TOKENS) and p.bounds["clients"] == pytest.approx(250)


def test_async_blocking_is_bound_by_the_event_loop() -> None:
    p = predict(SCENARIOS_BY_ID["pg_sleep/async-blocking/psycopg2"], 25, 0.1, SHAPE)
    assert p.bound == "event loop" and p.rps == pytest.approx(1 / 0.1) and p.capacity == pytest.approx(1)


def test_threadpool_style_holds_a_thread_for_half_of_w() -> None:
    p = predict(SCENARIOS_BY_ID["wait/threadpool/time"], 40, 0.1, SHAPE)
    assert p.bound == "threadpool" and p.rps == pytest.approx(TOKENS / 0.05)


def test_async_with_a_pool_smaller_than_c_is_bound_by_the_pool() -> None:
    shape = ServerShape(threadpool_tokens=TOKENS, pool_max={"asyncpg": 8}, cpu_count=2)
    p = predict(SCENARIOS_BY_ID["pg_sleep/async/asyncpg"], 25, 0.1, shape)
    assert p.bound == "pool asyncpg" and p.rps == pytest.approx(80)
    assert predict(SCENARIOS_BY_ID["pg_sleep/async/asyncpg"], 5, 0.1, shape).bound == "clients"


def test_capacity_is_what_the_scarcest_resource_lets_run_at_once() -> None:
    shape = ServerShape.declared(threadpool_tokens=16, pool_max=40)
    assert capacity(SCENARIOS_BY_ID["wait/sync/time"], 40, shape) == 16
    assert capacity(SCENARIOS_BY_ID["wait/async-blocking/time"], 40, shape) == 1
    assert capacity(SCENARIOS_BY_ID["wait/threadpool/time"], 40, shape) == 32
    assert capacity(SCENARIOS_BY_ID["pg_sleep/async/asyncpg"], 40, shape) == 40
    assert capacity(SCENARIOS_BY_ID["pg_sleep/async/asyncpg"], 40, ServerShape.declared(16, 1)) == 1


def test_explain_names_the_cpu_and_errors() -> None:
    busy = summarise([make_record("lookup/async/asyncpg", eff=0.1, cpu_util=0.97, round=r) for r in range(3)])[0]
    assert "CPU-bound" in explain(busy)
    failing = summarise([make_record("wait/sync/time", non_2xx=10, round=r) for r in range(3)])[0]
    assert "failed/non-2xx" in explain(failing) and "successful ones" in explain(failing)
    fine = summarise([make_record("wait/sync/time", round=r) for r in range(3)])[0]
    assert explain(fine) == ""


def test_a_service_beyond_one_core_is_explained_by_work_outside_the_gil() -> None:
    records = [make_record("file/sync/open[large.bin]", eff=1.3, cpu_util=1.29, round=r) for r in range(3)]
    for record in records:
        assert record["model"] is not None
        record["model"]["bound"] = "service CPU"
    assert "1.29 cores busy" in explain(summarise(records)[0]) and "GIL" in explain(summarise(records)[0])


def test_resources_are_held_for_the_servers_share_and_clients_wait_the_whole_latency() -> None:
    # W = 12 ms as the client sees it, S = 10 ms in the app: the event loop is held for S, not W.
    p = predict(SCENARIOS_BY_ID["lookup/async-blocking/psycopg2"], 40, 0.012, SHAPE, hold_s=0.010)
    assert p.bound == "event loop" and p.rps == pytest.approx(100)
    assert p.bounds["clients"] == pytest.approx(40 / 0.012)


def test_a_blocked_event_loop_is_also_held_for_its_work_outside_the_app() -> None:
    # S = 1 ms in the app, of which the loop works 0.3 ms; a request costs the service 0.9 ms of CPU in all,
    # so the loop also spends 0.6 ms on it outside the app (HTTP in and out): held 1.6 ms per request.
    cpu = CpuPerRequest(service_s=0.0009, postgres_s=None, client_s=None, new_sessions=0)
    scenario = SCENARIOS_BY_ID["lookup/async-blocking/psycopg2"]
    p = predict(scenario, 40, 0.002, SHAPE, hold_s=0.001, cpu=cpu, loop_cpu_s=0.0003)
    assert p.bound == "event loop" and p.rps == pytest.approx(1 / 0.0016)
    assert predict(scenario, 40, 0.002, SHAPE, hold_s=0.001, cpu=cpu).rps == pytest.approx(1000)  # no loop CPU read: S
    threads = predict(SCENARIOS_BY_ID["lookup/sync/psycopg2"], 40, 0.002, SHAPE, hold_s=0.001, cpu=cpu, loop_cpu_s=0.0003)
    assert threads.bounds["threadpool"] == pytest.approx(TOKENS / 0.001)  # a thread is held for S alone


def test_an_event_loop_miss_says_what_grew_under_load() -> None:
    records = [make_record("lookup/async-blocking/psycopg2", eff=0.7, round=r) for r in range(3)]
    for record in records:
        record["calibration_cpu"] = {"service_s": 0.0004}
        assert record["cpu"] is not None
        record["cpu"]["service_s"] = 0.0005
    why = explain(summarise(records)[0])
    assert "bound event loop" in why and "0.40 ms per request in the warm-up, 0.50 under load" in why


def test_cpu_bounds_follow_the_utilisation_law() -> None:
    cpu = CpuPerRequest(service_s=0.001, postgres_s=0.0004, client_s=0.0002, new_sessions=0)
    p = predict(SCENARIOS_BY_ID["lookup/async/asyncpg"], 40, 0.002, SHAPE, cpu=cpu)
    assert p.bound == "service CPU" and p.rps == pytest.approx(1000)  # one core per worker: the GIL
    assert p.bounds["shared cores"] == pytest.approx(2 / 0.0016)
    assert p.bounds["ab CPU"] == pytest.approx(5000) and p.slots is None


