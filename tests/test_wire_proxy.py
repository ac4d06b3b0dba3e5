"""The wire proxy (db/wire_proxy): the delay it adds, what it counts, and how it fails, on the real Postgres.

Every proxy here is a real ``python -m db.wire_proxy`` process; clients are the real drivers.
Times are compared as differences and ratios with wide margins (a 2-core machine shared with
Postgres and other test runs): absolute figures belong in reports.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import psycopg
import psycopg2
import pytest

from app.settings import Settings
from db.wire_proxy import MAX_RTT_MS, ProxyError, ProxyProcess, WireCounters, parse_rtt_ms
from db.wire_proxy.process import upstream_of
from db.wire_proxy.protocol import FrontendParser, ProtocolViolation, StartupCode, split_startup_packet
from loadtests.server import ServiceProcess, free_port

SELECT_ONE = "SELECT 1"


@pytest.fixture(scope="module")
def database_url(empty_database_factory: Callable[[], str]) -> str:
    return empty_database_factory()


@pytest.fixture(scope="module")
def proxy(database_url: str) -> Iterator[ProxyProcess]:
    """A proxy adding 1 ms, for the counting tests (the delay makes every message its own chunk
    no more than it would be on a network, and shows nothing is lost or merged by the queues)."""
    with ProxyProcess(database_url, 1.0) as proxy:
        yield proxy


def messages_of(proxy: ProxyProcess, action: Callable[[], object]) -> WireCounters:
    """The counts of what ``action`` sent, and nothing else."""
    proxy.reset()
    action()
    return proxy.reset()


def median_round_trip_ms(url: str, samples: int = 200) -> float:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        cursor = connection.cursor()
        cursor.execute(SELECT_ONE)  # connect and warm up outside the sample
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            cursor.execute(SELECT_ONE)
            cursor.fetchone()
            times.append(time.perf_counter() - started)
    finally:
        connection.close()
    return statistics.median(times) * 1000


# --- the delay -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_added_rtt_is_what_was_asked(database_url: str) -> None:
    direct = median_round_trip_ms(database_url)
    with ProxyProcess(database_url, 2.0) as slow:
        added = median_round_trip_ms(slow.url) - direct
    with ProxyProcess(database_url, 0.0) as plain:
        added_by_relaying = median_round_trip_ms(plain.url) - direct
    assert 1.6 < added < 3.0, f"asked for 2 ms, the proxy added {added:.3f} ms"
    # A ratio with a wide margin, not a timing: relaying alone must stay well under the delay asked for (seen
    # here: 0.2-0.4 ms quiet, 0.75 ms while the rest of the suite loaded both cores).
    assert added_by_relaying < added / 2, f"relaying alone added {added_by_relaying:.3f} ms of the {added:.3f} ms"


@pytest.mark.postgres
def test_connections_are_not_serialised(database_url: str) -> None:
    """20 connections doing 20 round trips each at 5 ms take about 20 RTTs, not 400."""
    rtt_ms, clients, trips = 5.0, 20, 20
    with ProxyProcess(database_url, rtt_ms) as slow:

        async def client() -> None:
            connection = await asyncpg.connect(slow.url)
            try:
                for _ in range(trips):
                    assert await connection.fetchval(SELECT_ONE) == 1
            finally:
                await connection.close()

        async def all_clients() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            return time.perf_counter() - started

        elapsed = asyncio.run(all_clients())
        counters = slow.counters()
    serial = clients * trips * rtt_ms / 1000
    assert elapsed < serial / 4, f"{clients} clients took {elapsed:.2f} s; one after another would be {serial:.1f} s"
    assert counters.sessions == clients and counters.connections == clients
    # Each client's first `SELECT 1` adds asyncpg's Parse/Describe round trip.
    assert counters.count("B") == clients * trips and counters.parses == clients


@pytest.mark.postgres
def test_pipelining_is_kept(database_url: str) -> None:
    """psycopg 3's pipeline mode sends 50 statements before reading: about one RTT, not 50."""
    rtt_ms = 5.0
    with ProxyProcess(database_url, rtt_ms) as slow, psycopg.connect(slow.url, autocommit=True) as connection:
        connection.execute(SELECT_ONE)
        started = time.perf_counter()
        with connection.pipeline():
            cursors = [connection.execute("SELECT %s::int", [n]) for n in range(50)]
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert [cursor.fetchone() for cursor in cursors] == [(n,) for n in range(50)]
    assert elapsed_ms < 10 * rtt_ms, f"50 pipelined statements took {elapsed_ms:.1f} ms at {rtt_ms} ms RTT"


@pytest.mark.postgres
def test_large_messages_both_ways_arrive_whole(proxy: ProxyProcess) -> None:
    """Megabytes each way, so the delay lines' flow control (pause/resume reading) is exercised."""
    payload = "x" * (8 << 20)
    with psycopg.connect(proxy.url, autocommit=True) as connection:
        assert connection.execute("SELECT length(%s::text)", [payload]).fetchone() == (len(payload),)
        assert connection.execute("SELECT repeat('y', 16 << 20)").fetchone() == ("y" * (16 << 20),)


# --- the counts ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_psycopg2_autocommit_select_is_one_round_trip(proxy: ProxyProcess) -> None:
    connection = psycopg2.connect(proxy.url)
    connection.autocommit = True
    cursor = connection.cursor()
    counters = messages_of(proxy, lambda: cursor.execute(SELECT_ONE))
    assert counters.messages == {"Q": 1} and counters.round_trips == 1 and counters.statements == 1
    connection.close()


@pytest.mark.postgres
def test_psycopg2_without_autocommit_sends_begin_first(proxy: ProxyProcess) -> None:
    connection = psycopg2.connect(proxy.url)
    cursor = connection.cursor()
    counters = messages_of(proxy, lambda: cursor.execute(SELECT_ONE))
    assert counters.messages == {"Q": 2} and counters.round_trips == 2  # BEGIN, then the SELECT
    counters = messages_of(proxy, connection.rollback)
    assert counters.messages == {"Q": 1}
    connection.close()


@pytest.mark.postgres
def test_psycopg3_sends_parse_bind_execute_sync_as_one(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url, autocommit=True) as connection:
        counters = messages_of(proxy, lambda: connection.execute("SELECT %s::int", [1]).fetchone())
    assert counters.messages == {"P": 1, "B": 1, "D": 1, "E": 1, "S": 1}
    assert (counters.round_trips, counters.statements, counters.parses) == (1, 1, 1)


@pytest.mark.postgres
async def test_asyncpg_prepares_a_statement_on_its_first_run(proxy: ProxyProcess) -> None:
    connection = await asyncpg.connect(proxy.url)
    try:
        proxy.reset()
        assert await connection.fetchval("SELECT $1::int", 1) == 1
        first = proxy.reset()
        assert await connection.fetchval("SELECT $1::int", 2) == 2
        again = proxy.reset()
    finally:
        await connection.close()
    # Parse/Describe/Flush, then Bind/Execute/Sync: two round trips; then the cached statement: one.
    assert first.messages == {"P": 1, "D": 1, "H": 1, "B": 1, "E": 1, "S": 1} and first.round_trips == 2
    assert again.messages == {"B": 1, "E": 1, "S": 1} and again.round_trips == 1


@pytest.mark.postgres
def test_sessions_and_encryption_requests(proxy: ProxyProcess) -> None:
    """Every client asks for TLS with its default sslmode; the proxy says no and the session goes on."""

    def connect_all() -> None:
        psycopg2.connect(proxy.url).close()
        psycopg.connect(proxy.url).close()
        asyncio.run(_asyncpg_connect_and_close(proxy.url))

    counters = messages_of(proxy, connect_all)
    assert (counters.connections, counters.sessions, counters.ssl_requests) == (3, 3, 3)
    assert counters.messages == {"X": 3}  # each sent Terminate, and nothing else
    assert counters.round_trips == 0


async def _asyncpg_connect_and_close(url: str) -> None:
    connection = await asyncpg.connect(url)
    await connection.close()


@pytest.mark.postgres
def test_a_cancel_request_is_relayed(proxy: ProxyProcess) -> None:
    connection = psycopg2.connect(proxy.url)
    connection.autocommit = True
    cursor = connection.cursor()
    proxy.reset()
    threading.Timer(0.3, connection.cancel).start()
    with pytest.raises(psycopg2.errors.QueryCanceled):
        cursor.execute("SELECT pg_sleep(10)")
    counters = proxy.reset()
    assert counters.cancel_requests == 1 and counters.connections == 1 and counters.sessions == 0
    cursor.execute(SELECT_ONE)  # the session goes on
    connection.close()


@pytest.mark.postgres
def test_reset_returns_the_counts_and_zeroes_them(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.url, autocommit=True) as connection:
        proxy.reset()
        for _ in range(3):
            connection.execute(SELECT_ONE)
        assert proxy.counters().round_trips == 3
        assert proxy.reset().round_trips == 3
        assert proxy.counters().round_trips == 0
        assert proxy.counters().active >= 1  # a gauge, not a count: reset leaves it


def test_the_parser_counts_the_same_however_the_stream_is_cut() -> None:
    message = b"Q" + (4 + 9).to_bytes(4, "big") + b"SELECT 1\0"
    parse = b"P" + (4 + 3).to_bytes(4, "big") + b"\0\0\0"
    sync = b"S" + (4).to_bytes(4, "big")
    stream = message + parse + sync + message
    for size in (1, 2, 3, 5, 7, len(stream)):
        counts = [0] * 256
        parser = FrontendParser(counts)
        for start in range(0, len(stream), size):
            parser.feed(stream[start : start + size])
        assert (counts[ord("Q")], counts[ord("P")], counts[ord("S")]) == (2, 1, 1), size
    with pytest.raises(ProtocolViolation):
        FrontendParser([0] * 256).feed(b"Q\0\0\0\x02")


def test_startup_packets_are_split_whole() -> None:
    ssl = (8).to_bytes(4, "big") + StartupCode.SSL_REQUEST.to_bytes(4, "big")
    buffer = bytearray(ssl[:5])
    assert split_startup_packet(buffer) is None
    buffer += ssl[5:] + b"more"
    packet = split_startup_packet(buffer)
    assert packet is not None and packet.code == StartupCode.SSL_REQUEST and not packet.is_startup_message
    assert buffer == b"more"
    with pytest.raises(ProtocolViolation):  # a TLS ClientHello, say: not a Postgres length
        split_startup_packet(bytearray(b"\x16\x03\x01\x02\x00\x01\x00\x01"))


# --- failures --------------------------------------------------------------------------------------


def test_upstream_down_is_a_quick_connection_error() -> None:
    dead_url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with ProxyProcess(dead_url, 1.0) as proxy:
        started = time.perf_counter()
        with pytest.raises(psycopg2.OperationalError, match="cannot reach the database"):
            psycopg2.connect(proxy.url, connect_timeout=10)
        with pytest.raises(psycopg.OperationalError, match="cannot reach the database"):
            psycopg.connect(proxy.url, connect_timeout=10)
        with pytest.raises(asyncpg.PostgresConnectionError, match="cannot reach the database"):
            asyncio.run(_asyncpg_connect_and_close(proxy.url))
        elapsed = time.perf_counter() - started
        counters = proxy.counters()
    assert elapsed < 3, f"three refused connections took {elapsed:.1f} s"
    assert counters.upstream_failures >= 3 and counters.active == 0


@pytest.mark.postgres
def test_a_dead_proxy_is_a_connection_error(database_url: str) -> None:
    proxy = ProxyProcess(database_url, 1.0).start()
    connection = psycopg2.connect(proxy.url)
    connection.autocommit = True
    connection.cursor().execute(SELECT_ONE)
    assert proxy.pid is not None
    os.kill(proxy.pid, signal.SIGKILL)
    psutil.Process(proxy.pid).wait(5)
    assert not proxy.alive
    with pytest.raises(psycopg2.OperationalError):
        connection.cursor().execute(SELECT_ONE)
    with pytest.raises(psycopg2.OperationalError):  # nothing listens any more: refused at once
        psycopg2.connect(proxy.url, connect_timeout=5)
    with pytest.raises(ProxyError):
        proxy.counters()
    proxy.stop()


@pytest.mark.postgres
def test_the_service_answers_503_when_its_proxy_dies(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url is not None
    with ProxyProcess(settings.database_url, 1.0) as proxy:
        service_settings = settings.model_copy(update={"database_url": proxy.url, "port": 0})
        with ServiceProcess(service_settings, tmp_path / "server.log") as service:
            paths = ["/bench/lookup/sync/psycopg2?id=1", "/bench/lookup/async/asyncpg?id=1",
                     "/bench/lookup/async/psycopg3-async?id=1", "/bench/lookup/sync/sqlalchemy-sync?id=1"]
            for path in paths:
                assert httpx.get(service.url + path, timeout=10).status_code == 200, path
            assert proxy.counters().sessions >= len(paths)
            assert proxy.pid is not None
            os.kill(proxy.pid, signal.SIGKILL)
            for path in paths:
                started = time.perf_counter()
                response = httpx.get(service.url + path, timeout=30)
                elapsed = time.perf_counter() - started
                assert response.status_code == 503, (path, response.text)
                assert response.json()["error"] in {"database_unavailable", "pool_timeout"}, response.text
                assert elapsed < settings.connect_timeout + settings.acquire_timeout, (path, elapsed)
            assert service.alive


@pytest.mark.postgres
def test_the_proxy_stops_with_its_parent(database_url: str) -> None:
    """A harness killed outright leaves no proxy behind: it notices its parent is gone within seconds."""
    script = (
        "import sys, time\n"
        "from db.wire_proxy import ProxyProcess\n"
        f"proxy = ProxyProcess({database_url!r}, 1.0).start()\n"
        "print(proxy.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        parent.kill()
        parent.wait()
        child.wait(5)  # raises psutil.TimeoutExpired if it lingers
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()  # warnings are errors: an open pipe is a ResourceWarning


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["-1", "-0.001", "abc", "", "nan", "inf", str(MAX_RTT_MS + 0.1), "1e9"])
def test_bad_rtt_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--db-rtt"):
        parse_rtt_ms(text)


def test_good_rtt_is_accepted() -> None:
    assert [parse_rtt_ms(text) for text in ("0", "0.5", " 2 ", str(MAX_RTT_MS))] == [0, 0.5, 2, MAX_RTT_MS]


def test_the_process_refuses_bad_arguments_with_exit_2() -> None:
    for arguments in (["--upstream", "127.0.0.1:5432", "--rtt-ms", "-1"], ["--upstream", "nohostport"], []):
        result = subprocess.run([sys.executable, "-m", "db.wire_proxy", *arguments], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (arguments, result.stderr)
        assert "error:" in result.stderr


def test_a_unix_socket_url_is_refused() -> None:
    with pytest.raises(ValueError, match="TCP host"):
        upstream_of("postgresql://postgres@/iobench?host=/var/run/postgresql")
    with pytest.raises(ValueError, match="TCP host"):
        upstream_of("postgresql:///iobench")
    assert upstream_of("postgresql+asyncpg://u:p@db.example/x") == ("db.example", 5432)


@pytest.mark.postgres
def test_the_proxied_url_is_the_same_database(proxy: ProxyProcess, database_url: str) -> None:
    with psycopg.connect(proxy.url) as through, psycopg.connect(database_url) as direct:
        query = "SELECT current_database(), current_user"
        assert through.execute(query).fetchone() == direct.execute(query).fetchone()
    assert f":{proxy.port}/" in proxy.url


# --- iobench serve --db-rtt ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "abc", "101", "nan", "", "1e400"])
def test_serve_refuses_a_bad_db_rtt_before_starting_anything(value: str) -> None:
    # A database nobody answers at: had serve looked for it first, the error would be another one.
    env = {**os.environ, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"}
    result = subprocess.run([sys.executable, "-m", "app", "serve", "--db-rtt", value], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    assert result.stdout == "" and result.stderr.startswith("error: --db-rtt") and result.stderr.count("\n") == 1, result


@pytest.mark.postgres
def test_serve_with_db_rtt_runs_through_the_proxy_and_stops_it(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **settings.to_env(), "IOBENCH_PORT": str(port)}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen([sys.executable, "-m", "app", "serve", "--skip-prepare", "--db-rtt", "2"],
                                 env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert "adds 2 ms RTT" in log.read_text() and "measured: +" in log.read_text()
        proxies = [child for child in psutil.Process(serve.pid).children() if "db.wire_proxy" in child.cmdline()]
        assert len(proxies) == 1, psutil.Process(serve.pid).children()
        assert httpx.get(f"{base}/bench/lookup/async/asyncpg", params={"id": 1}, timeout=10).status_code == 200
        proxy_port = re.search(r"wire proxy on 127\.0\.0\.1:(\d+)", log.read_text())
        assert proxy_port is not None, log.read_text()
        assert f":{proxy_port[1]}/" in httpx.get(f"{base}/config", timeout=10).json()["database_url"]
    finally:
        serve.terminate()
        serve.wait(30)
    proxies[0].wait(5)  # gone with the service
