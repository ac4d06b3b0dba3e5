"""What a request costs, measured: wire work through the wire proxy, CPU of the service, Postgres and ab."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from test_round_trips import EXPECTED

from app.catalogue import STEPS
from app.settings import Settings
from db.wire_proxy import ProxyProcess
from loadtests.ab import AbRun
from loadtests.server import ServiceProcess
from loadtests.work import CpuMeter, count_work, open_server_stats

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def counted_service(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, ProxyProcess]]:
    """The service behind the wire proxy (no added delay), as the harness's counting pass runs it."""
    assert settings.database_url is not None
    logs = tmp_path_factory.mktemp("count")
    with ProxyProcess(settings.database_url, 0.0, log_path=logs / "proxy.log") as proxy:
        service_settings = settings.model_copy(update={"database_url": proxy.url})
        with ServiceProcess(service_settings, logs / "service.log") as service:
            yield service, proxy


@pytest.mark.parametrize("driver", ["psycopg2", "asyncpg", "sqlalchemy-async"])
def test_count_work_is_the_drivers_round_trips_times_the_steps(counted_service: tuple[ServiceProcess, ProxyProcess], driver: str) -> None:
    service, proxy = counted_service
    style = "async" if driver in ("asyncpg", "sqlalchemy-async") else "sync"
    found = count_work(f"{service.url}/bench/lookup/{style}/{driver}", proxy)
    assert found is not None
    assert found["round_trips"] == STEPS * EXPECTED[driver].lookup
    assert found["parses"] == 0 and found["sessions"] == 0, "warm pools open nothing and prepare nothing anew"


def test_count_work_says_none_for_a_failing_route(counted_service: tuple[ServiceProcess, ProxyProcess]) -> None:
    service, proxy = counted_service
    assert count_work(f"{service.url}/bench/lookup/sync/psycopg2?id=999999999", proxy) is None


@pytest.mark.skipif(shutil.which("ab") is None, reason="ApacheBench (ab) not installed")
@pytest.mark.ab
def test_cpu_meter_reads_the_service_its_backends_and_ab(live_server: ServiceProcess, settings: Settings) -> None:
    stats = open_server_stats(settings.database_url)
    assert stats is not None
    with stats:
        meter = CpuMeter(live_server.pid, stats)
        with AbRun(f"{live_server.url}/bench/report/async/asyncpg", 100_000, 4) as load:
            time.sleep(0.3)
            before = meter.read(load.pid)  # ab is read while it runs: a window can sit inside one ab run
            time.sleep(0.5)
            after = meter.read(load.pid)
            result = load.stop()
        cpu = meter.per_request(before, after, 100)
    assert cpu is not None and result.successful > 100
    assert cpu.service_s is not None and cpu.service_s > 0
    assert cpu.postgres_s is not None and cpu.postgres_s > 0, "the report query costs Postgres CPU"
    assert cpu.client_s is not None and cpu.client_s > 0
    assert cpu.new_sessions is not None


def test_no_database_means_no_backend_cpu() -> None:
    assert open_server_stats(None) is None
    meter = CpuMeter(None, None)
    found = meter.per_request(meter.read(), meter.read(), 10)
    assert found is not None and found.postgres_s is None and found.service_s is None


def test_a_targets_pid_is_used_only_when_it_is_an_iobench_service(live_server: ServiceProcess) -> None:
    import os

    from loadtests.runner import fetch_config, service_pid

    config = fetch_config(live_server.url)
    assert service_pid(config) == live_server.pid  # uvicorn in our namespace: its CPU can be read
    assert service_pid({**config, "pid": os.getpid()}) is None  # the harness itself, as PID 1 of a container would be
    assert service_pid({**config, "pid": 999_999_999}) is None and service_pid({}) is None
