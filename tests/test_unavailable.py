"""The 503 path: a dead database, an exhausted pool, a statement timeout. Each is a quick JSON 503,
the rest of the service keeps answering, and the pools are clean afterwards."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from app.catalogue import DRIVERS, PG_SLEEP, SCENARIOS, Kind, Scenario
from app.main import create_app
from app.settings import Settings
from loadtests.server import ServiceProcess, free_port

pytestmark = pytest.mark.postgres  # every test here runs against the session's test database

POOLED = [s for s in SCENARIOS if any(driver.pooled for driver in s.drivers)]
NOT_POOLED = [s for s in SCENARIOS if not any(driver.pooled for driver in s.drivers)]
DB_DRIVERS = [driver for driver in DRIVERS if driver.pooled]
#: The drivers with a route that holds a connection for as long as it is asked to.
SLEEPING_DRIVERS = [driver for driver in DB_DRIVERS if PG_SLEEP in driver.workloads]


def _query(scenario: Scenario, seconds: float = 0.01) -> dict[str, object]:
    return {"seconds": seconds} if "seconds" in scenario.workload.parameters else {}


def _on_port(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _plain_path(driver_name: str, workload: str, seconds: float) -> str:
    """The driver's own style: `def` route for a sync driver, `async def` awaiting for an async one."""
    kind = next(d.kind for d in DRIVERS if d.name == driver_name)
    return f"/bench/{workload}/{'async' if kind is Kind.ASYNC else 'sync'}/{driver_name}?seconds={seconds}"


def assert_503(response: httpx.Response, error: str, driver: str) -> dict[str, str]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("retry-after") == "1"
    body: dict[str, str] = response.json()
    assert set(body) == {"error", "driver", "detail"}, body
    assert body["error"] == error, body
    assert body["driver"] == driver, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


# --- the database is not there --------------------------------------------------------------


@pytest.fixture(scope="module")
def dead_settings(settings: Settings) -> Settings:
    # A refused port: nothing listens there, so every connection attempt fails at once.
    return settings.model_copy(update={"database_url": _on_port(settings.url, free_port())})


@pytest.fixture(scope="module")
def dead_client(dead_settings: Settings) -> Iterator[tuple[TestClient, float]]:
    started = time.monotonic()
    with TestClient(create_app(dead_settings)) as client:
        yield client, time.monotonic() - started


def test_the_service_starts_without_its_database(dead_client: tuple[TestClient, float], dead_settings: Settings) -> None:
    client, startup = dead_client
    assert startup < dead_settings.connect_timeout + 2, f"startup took {startup:.2f} s"
    assert client.get("/ping").json() == {"ok": True}


@pytest.mark.parametrize("scenario", POOLED, ids=lambda s: s.id)
def test_every_database_scenario_is_a_quick_503(
    dead_client: tuple[TestClient, float], dead_settings: Settings, scenario: Scenario
) -> None:
    client, _ = dead_client
    started = time.monotonic()
    response = client.get(scenario.path, params=_query(scenario))
    elapsed = time.monotonic() - started
    # The route's own driver does step 1 (the twin of a threadpool route only does step 2).
    body = assert_503(response, "database_unavailable", scenario.driver.name)
    assert "127.0.0.1" in body["detail"] or "refused" in body["detail"].lower(), body
    assert elapsed < dead_settings.connect_timeout + 2, f"{scenario.id} took {elapsed:.2f} s"


@pytest.mark.parametrize("scenario", NOT_POOLED, ids=lambda s: s.id)
def test_scenarios_without_a_database_still_answer(dead_client: tuple[TestClient, float], scenario: Scenario) -> None:
    client, _ = dead_client
    response = client.get(scenario.path, params=_query(scenario, 0.001))
    assert response.status_code == 200, response.text


def test_introspection_still_answers(dead_client: tuple[TestClient, float]) -> None:
    client, _ = dead_client
    assert client.get("/ping").status_code == 200
    assert client.get("/scenarios").status_code == 200
    response = client.get("/config")
    assert response.status_code == 200
    config = response.json()
    assert "error" in config["database"], config["database"]
    assert set(config["pools"]) == {driver.name for driver in DB_DRIVERS}


class Forwarder:
    """A TCP relay to Postgres that can be switched on later: the database "comes back"."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                return
            with self._lock:
                if self._stopped:  # accepted while stop() closed the others: close these too
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            self._stopped = True
            for sock in self._sockets:
                sock.close()


def test_the_service_recovers_when_the_database_comes_back(settings: Settings) -> None:
    url = make_url(settings.url)
    forwarder = Forwarder((url.host or "127.0.0.1", url.port or 5432))
    down = settings.model_copy(update={"database_url": _on_port(settings.url, forwarder.port)})
    with TestClient(create_app(down)) as client:
        try:
            for driver in DB_DRIVERS:
                assert_503(client.get(f"/bench/lookup/{'async' if driver.kind is Kind.ASYNC else 'sync'}/{driver.name}?id=1"),
                           "database_unavailable", driver.name)
            forwarder.start()
            # psycopg_pool reconnects in the background with backoff (1 s, 2 s, ...): allow a few seconds.
            deadline = time.monotonic() + 15
            pending = {driver.name for driver in DB_DRIVERS}
            while pending and time.monotonic() < deadline:
                for name in sorted(pending):
                    kind = "async" if next(d.kind for d in DB_DRIVERS if d.name == name) is Kind.ASYNC else "sync"
                    response = client.get(f"/bench/lookup/{kind}/{name}?id=1")
                    if response.status_code == 200:
                        pending.discard(name)
                    else:
                        assert response.status_code == 503, response.text
                time.sleep(0.1)
            assert not pending, f"still 503 after the database came back: {sorted(pending)}"
        finally:
            forwarder.stop()


# --- the pool is exhausted --------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_connection_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A real server whose pools hold one connection each and wait half a second for it."""
    narrow = settings.model_copy(update={"pool_min": 1, "pool_max": 1, "acquire_timeout": 0.5, "port": 0})
    with ServiceProcess(narrow, tmp_path_factory.mktemp("narrow") / "server.log") as server:
        yield server


async def _timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get(path)
    return response, time.monotonic() - started


async def test_an_exhausted_pool_is_a_quick_503(one_connection_server: ServiceProcess) -> None:
    """Two concurrent pg_sleep(2) on a one-connection pool: one waits 0.5 s and gets 503 pool_timeout.

    Every driver with a pg_sleep route: the psycopg 3 pools must still say pool_timeout (not
    database_unavailable) when the database is fine and only the pool is full. The pools are
    separate, so all the requests run together in one round of ~4 s.
    """
    seconds = 2
    paths = {driver.name: _plain_path(driver.name, "pg_sleep", seconds) for driver in SLEEPING_DRIVERS}
    async with httpx.AsyncClient(base_url=one_connection_server.url, timeout=30) as client:
        results = await asyncio.gather(*(_timed_get(client, path) for path in paths.values() for _ in range(2)))
    for index, name in enumerate(paths):
        pair = sorted(results[2 * index: 2 * index + 2], key=lambda result: result[0].status_code)
        (ok, ok_time), (refused, refused_time) = pair
        assert ok.status_code == 200, (name, ok.text)
        assert ok.json()["result"] == seconds
        assert_503(refused, "pool_timeout", name)
        assert refused_time < 1.5, f"{name}: the 503 took {refused_time:.2f} s"
        assert ok_time >= seconds, name


# --- statement timeout ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_statements(settings: Settings) -> Iterator[TestClient]:
    quick = settings.model_copy(update={"statement_timeout_ms": 200, "pool_min": 1, "pool_max": 2})
    with TestClient(create_app(quick)) as client:
        yield client


@pytest.mark.parametrize("scenario", [s for s in POOLED if s.workload.name == "pg_sleep"], ids=lambda s: s.id)
def test_statement_timeout_is_a_503_and_leaves_clean_connections(
    short_statements: TestClient, settings: Settings, scenario: Scenario
) -> None:
    client = short_statements
    started = time.monotonic()
    response = client.get(scenario.path, params={"seconds": 1})
    elapsed = time.monotonic() - started
    assert_503(response, "statement_timeout", scenario.driver.name)
    assert elapsed < 1, f"{scenario.id} took {elapsed:.2f} s: the statement was not cut at 200 ms"
    # More requests than the pool holds, so every connection it has is reused after the timeout.
    for attempt in range(3):
        response = client.get(scenario.path, params={"seconds": 0.01})
        assert response.status_code == 200, (attempt, response.text)
    for driver in scenario.drivers:
        base = "async" if driver.kind is Kind.ASYNC else "sync"
        lookup = client.get(f"/bench/lookup/{base}/{driver.name}", params={"id": settings.seed_rows})
        assert lookup.status_code == 200 and lookup.json()["result"]["id"] == settings.seed_rows, lookup.text
        write = client.get(f"/bench/write/{base}/{driver.name}", params={"slot": 1, "note": "after timeout"})
        assert write.status_code == 200 and write.json()["result"]["note"] == "after timeout", write.text

