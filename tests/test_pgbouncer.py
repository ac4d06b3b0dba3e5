"""PgBouncer (db/pgbouncer): the generated config, the managed process, and how it fails.

Every PgBouncer here is Debian's real ``pgbouncer`` started by ``PgBouncerProcess`` in front of
the real Postgres. Tests that need it skip only when the executable is missing; ``.ci/run``
installs it (``apt-get install -y pgbouncer``), so in CI they never skip.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypedDict, Unpack, cast

import httpx
import psutil
import psycopg
import psycopg2
import pytest
from fastapi.testclient import TestClient
from tcp_proxy import TcpProxy

from app.catalogue import DRIVERS, DRIVERS_BY_NAME
from app.main import create_app
from app.registry import resolve
from app.settings import Settings
from db.drivers.base import ConnectionConfig, PoolSize, unavailable
from db.pgbouncer import INSTALL_HINT, PgBouncerError, PgBouncerMissingError, PgBouncerProcess, find_pgbouncer, pgbouncer_version
from db.pgbouncer.compatibility import CompatibilityTable, Database, measure_compatibility
from db.pgbouncer.config import IGNORED_STARTUP_PARAMETERS, PgBouncerConfig, Upstream
from db.pgbouncer.process import ROOT_RUNS_AS
from loadtests.server import ServiceProcess


def _installed() -> bool:
    try:
        find_pgbouncer()
    except PgBouncerMissingError:
        return False
    return True


needs_pgbouncer = pytest.mark.skipif(
    not _installed(), reason="pgbouncer is not installed (`apt-get install -y pgbouncer`; .ci/run installs it, so CI never skips this)"
)


@pytest.fixture(scope="module")
def database_url(empty_database_factory: Callable[[], str]) -> str:
    return empty_database_factory()


@pytest.fixture(scope="module")
def bouncer(database_url: str) -> Iterator[PgBouncerProcess]:
    if not _installed():
        pytest.skip("pgbouncer is not installed (`apt-get install -y pgbouncer`; .ci/run installs it, so CI never skips this)")
    with PgBouncerProcess(database_url, pool_size=2, statement_timeout_ms=4321) as bouncer:
        yield bouncer


def backend_pid(url: str) -> int:
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:
        row = connection.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


# --- the generated config ------------------------------------------------------------------------


class ConfigOverrides(TypedDict, total=False):
    """The numbers of a PgBouncerConfig the tests vary."""

    pool_size: int
    max_client_conn: int
    statement_timeout_ms: int | None


def config(url: str = "postgresql://bench:s3cret@db.example:5433/iobench", **overrides: Unpack[ConfigOverrides]) -> PgBouncerConfig:
    return PgBouncerConfig(upstream=Upstream.from_url(url), port=6433, auth_file="/x/userlist.txt", **overrides)


def test_the_config_pools_transactions_on_loopback_with_trust_auth() -> None:
    ini = config(pool_size=7, max_client_conn=500, statement_timeout_ms=15000).ini()
    lines = ini.splitlines()
    assert lines[:2] == ["[databases]", "iobench = host='db.example' port='5433' dbname='iobench' user='bench' "
                         "password='s3cret' connect_query='SET statement_timeout = 15000'"]
    for line in ["listen_addr = 127.0.0.1", "listen_port = 6433", "unix_socket_dir = ", "auth_type = trust",
                 "auth_file = /x/userlist.txt", "pool_mode = transaction", "default_pool_size = 7", "max_client_conn = 500",
                 "ignore_startup_parameters = options,statement_timeout"]:
        assert line in lines, line
    # A key PgBouncer 1.18 does not know makes it refuse the whole file.
    assert "max_prepared_statements" not in ini and "logfile" not in ini and "pidfile" not in ini
    assert config().auth_file_text() == '"bench" "s3cret"\n'


def test_quotes_in_values_are_doubled_and_line_breaks_refused() -> None:
    tricky = config("postgresql://o%27brien:pa%27ss%22word@h/iobench")
    assert "user='o''brien' password='pa''ss\"word'" in tricky.database_line()
    assert tricky.auth_file_text() == '"o\'brien" "pa\'ss""word"\n'
    with pytest.raises(ValueError, match="line break"):
        config("postgresql://u:a%0Ab@h/iobench").ini()


def test_urls_pgbouncer_cannot_front_are_refused() -> None:
    with pytest.raises(ValueError, match="one host"):
        Upstream.from_url("postgresql:///iobench")
    with pytest.raises(ValueError, match="one host"):
        Upstream.from_url("postgresql://u@h1,h2/iobench")
    with pytest.raises(ValueError, match="plain name"):
        config("postgresql://u@h/bad%20name").ini()
    with pytest.raises(ValueError, match="pool_size"):
        config(pool_size=0)


def test_a_socket_folder_a_driver_suffix_and_sslmode_are_understood() -> None:
    upstream = Upstream.from_url("postgresql+asyncpg://u@/iobench?host=/var/run/postgresql&sslmode=require")
    assert (upstream.host, upstream.port, upstream.dbname, upstream.user) == ("/var/run/postgresql", 5432, "iobench", "u")
    assert "server_tls_sslmode = require" in config("postgresql://u@h/iobench?sslmode=require").ini()


# --- the process -------------------------------------------------------------------------------


@needs_pgbouncer
@pytest.mark.postgres
def test_it_is_pgbouncer_in_transaction_mode_with_the_pool_size_asked(bouncer: PgBouncerProcess) -> None:
    assert pgbouncer_version().startswith("PgBouncer 1.")
    assert bouncer.alive and bouncer.pid is not None
    assert psutil.Process(bouncer.pid).name() == "pgbouncer"
    assert bouncer.config is not None
    [pool] = [pool for pool in bouncer.show("POOLS") if pool["database"] == bouncer.config.database]
    assert pool["pool_mode"] == "transaction"
    settings = {row["key"]: row["value"] for row in bouncer.show("CONFIG")}
    assert {key: settings[key] for key in ("query_wait_timeout", "server_login_retry", "server_connect_timeout")} == {
        "query_wait_timeout": "10", "server_login_retry": "1", "server_connect_timeout": "5"}
    # Six clients at once share at most pool_size=2 server connections.
    barrier = threading.Barrier(6)
    pids: list[int] = []

    def client() -> None:
        with psycopg2.connect(bouncer.url) as connection, connection.cursor() as cursor:
            barrier.wait(10)
            cursor.execute("SELECT pg_backend_pid(), pg_sleep(0.2)")
            row = cursor.fetchone()
            assert row is not None
            pids.append(row[0])

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(pids) == 6 and len(set(pids)) <= 2, pids


@needs_pgbouncer
@pytest.mark.postgres
def test_the_url_is_the_same_database_on_loopback(bouncer: PgBouncerProcess, database_url: str) -> None:
    assert bouncer.url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(bouncer.url, autocommit=True) as via, psycopg.connect(database_url, autocommit=True) as direct:
        assert via.execute("SELECT current_database()").fetchone() == direct.execute("SELECT current_database()").fetchone()


@needs_pgbouncer
@pytest.mark.postgres
def test_startup_statement_timeouts_are_dropped_and_the_configured_one_holds(bouncer: PgBouncerProcess) -> None:
    """PgBouncer 1.18 refuses startup parameters it does not track; the config drops the drivers' and
    sets its own on every server connection, so a runaway query is still cancelled."""
    assert set(IGNORED_STARTUP_PARAMETERS) == {"options", "statement_timeout"}
    with psycopg.connect(bouncer.url, autocommit=True, options="-c statement_timeout=99") as connection:
        assert connection.execute("SHOW statement_timeout").fetchone() == ("4321ms",)


@needs_pgbouncer
@pytest.mark.postgres
def test_under_root_it_runs_as_an_unprivileged_user(bouncer: PgBouncerProcess) -> None:
    assert bouncer.pid is not None
    expected = ROOT_RUNS_AS if os.geteuid() == 0 else psutil.Process().username()
    assert psutil.Process(bouncer.pid).username() == expected


@needs_pgbouncer
@pytest.mark.postgres
def test_stop_ends_it_frees_the_port_and_removes_the_config(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "pgbouncer.log"
    bouncer = PgBouncerProcess(database_url, log_path=log).start()
    pid, port = bouncer.pid, bouncer.port
    assert pid is not None and bouncer.config is not None
    folder = Path(bouncer.config.auth_file).parent
    assert folder.is_dir()
    bouncer.stop()
    bouncer.stop()  # twice is fine
    assert not bouncer.alive and bouncer.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not folder.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    # The log the caller asked for stays, with PgBouncer's own lines in it.
    text = log.read_text()
    assert "listening on 127.0.0.1" in text and "got SIGTERM" in text


@needs_pgbouncer
@pytest.mark.postgres
def test_it_stops_with_its_parent(database_url: str) -> None:
    """A harness killed outright (SIGKILL) leaves no PgBouncer behind: its supervisor notices."""
    script = (
        "import time\n"
        "from db.pgbouncer import PgBouncerProcess\n"
        f"bouncer = PgBouncerProcess({database_url!r}).start()\n"
        "print(bouncer.pid, bouncer.config.auth_file, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        pid, auth_file = parent.stdout.readline().split()
        child = psutil.Process(int(pid))
        assert child.name() == "pgbouncer"
        folder = Path(auth_file.decode()).parent
        assert folder.is_dir()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        child.wait(5)  # raises psutil.TimeoutExpired if it lingers
        deadline = time.monotonic() + 5
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not folder.exists(), "the generated config (with the password) outlived PgBouncer"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()  # warnings are errors: an open pipe is a ResourceWarning


@needs_pgbouncer
@pytest.mark.postgres
def test_a_pgbouncer_that_dies_is_seen(database_url: str) -> None:
    with PgBouncerProcess(database_url) as bouncer:
        pid = bouncer.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while bouncer.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not bouncer.alive and bouncer.pid is None, "the supervisor outlived PgBouncer"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(bouncer.url, connect_timeout=2).close()


# --- how it fails --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_missing_executable_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("IOBENCH_PGBOUNCER", "/nonexistent/pgbouncer")
    with pytest.raises(PgBouncerMissingError) as raised:
        PgBouncerProcess(database_url).start()
    assert "apt-get install -y pgbouncer" in str(raised.value) and "IOBENCH_PGBOUNCER" in str(raised.value)
    monkeypatch.delenv("IOBENCH_PGBOUNCER")
    monkeypatch.setenv("PATH", "/nonexistent")
    if _installed():  # found in /usr/sbin whatever PATH says: Debian's place for it
        assert find_pgbouncer().endswith("/pgbouncer")
    else:
        with pytest.raises(PgBouncerMissingError, match="apt-get install -y pgbouncer"):
            find_pgbouncer()
    assert isinstance(PgBouncerMissingError(), PgBouncerError) and str(PgBouncerMissingError()) == INSTALL_HINT


@needs_pgbouncer
def test_a_database_that_does_not_answer_fails_the_start_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]  # nothing listens here once closed
    before = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "pgbouncer"}
    bouncer = PgBouncerProcess(f"postgresql://postgres@127.0.0.1:{dead_port}/iobench", ready_timeout=2, log_path=tmp_path / "log")
    with pytest.raises(PgBouncerError, match="database behind it does not answer"):
        bouncer.start()
    assert not bouncer.alive
    after = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "pgbouncer"}
    assert after <= before


@needs_pgbouncer
@pytest.mark.postgres
def test_a_port_in_use_fails_with_pgbouncers_own_words(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bouncer = PgBouncerProcess(database_url, port=taken.getsockname()[1], ready_timeout=5)
        with pytest.raises(PgBouncerError, match="exited with code 1 before it listened(.|\n)*Address already in use"):
            bouncer.start()
        assert not bouncer.alive


# --- which drivers work through it -----------------------------------------------------------------

class PooledClass(Protocol):
    """A pooled driver's class: built from a ConnectionConfig, its kind and PgBouncer setting on the class."""

    kind: str
    pgbouncer_setting: str | None

    def __call__(self, config: ConnectionConfig) -> Database: ...


# resolve() knows only that a factory is callable; a pooled driver's factory is its class.
POOLED = {driver.name: cast(PooledClass, resolve(driver.factory)) for driver in DRIVERS if driver.pooled}
#: The catalogue's drivers left at their own transactions and reset ("-defaults" entries).
DRIVER_DEFAULTS = {driver.name: driver.defaults_of for driver in DRIVERS if driver.pooled and driver.defaults_of}
#: Every entry that is another driver's variant (its defaults, or another pool): it prepares as that driver does.
VARIANTS = {driver.name: driver.variant_of for driver in DRIVERS if driver.pooled and driver.variant_of}
#: shared/notes/driver-configs.md, section 5, checked on the wire against PgBouncer 1.18.0 in
#: transaction pooling: these drivers' defaults fail (server-side prepared statements), each with
#: the setting its documentation gives; psycopg2, alone or under SQLAlchemy, needs nothing.
FAIL_BY_DEFAULT = {
    "asyncpg": "statement_cache_size=0",
    "psycopg3-sync": "prepare_threshold=None",
    "psycopg3-async": "prepare_threshold=None",
    "sqlalchemy-async": 'connect_args={"statement_cache_size": 0}',
}


def fails_by_default(name: str) -> str | None:
    """The setting a catalogue driver needs through PgBouncer 1.18 (None: it needs none)."""
    return FAIL_BY_DEFAULT.get(VARIANTS.get(name) or name)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split()[1].split(".")[:2])


@pytest.fixture(scope="module")
def table(settings: Settings) -> CompatibilityTable:
    if not _installed():
        pytest.skip("pgbouncer is not installed (`apt-get install -y pgbouncer`; .ci/run installs it, so CI never skips this)")
    assert settings.database_url
    return measure_compatibility(settings.database_url, POOLED, driver_defaults=set(DRIVER_DEFAULTS))


def test_every_pooled_driver_of_the_catalogue_says_what_it_sets_for_pgbouncer() -> None:
    assert set(FAIL_BY_DEFAULT) < set(POOLED)
    for name, factory in POOLED.items():
        assert factory.pgbouncer_setting == fails_by_default(name), name


@needs_pgbouncer
@pytest.mark.postgres
def test_the_compatibility_table_is_the_notes_facts_for_this_pgbouncer(table: CompatibilityTable) -> None:
    assert table.pool_mode == "transaction" and table.pool_size < table.concurrency
    assert table.calls > 6, "psycopg 3 prepares from a statement's 6th run on a connection"
    entries = table.by_driver()
    assert set(entries) == set(POOLED)
    # Every driver works with its setting, whatever the version.
    for name, entry in entries.items():
        assert entry.with_setting.works, (name, entry.with_setting.first_error)
        assert all(result.calls == table.calls * table.concurrency for result in entry.with_setting.operations)
    if version_tuple(table.pgbouncer) >= (1, 24):
        pytest.skip(f"{table.pgbouncer} tracks prepared statements by default (max_prepared_statements = 200 since 1.24): "
                    "the notes' facts are for 1.18, Debian 12's")
    for name, entry in entries.items():
        setting = fails_by_default(name)
        if setting:
            assert not entry.works_out_of_the_box, name
            assert entry.setting_needed == setting
            # A clear 503 naming the cause and the fix, never a 500 or a hang.
            assert entry.out_of_the_box.answer == "503 prepared_statement", (name, entry.out_of_the_box.first_error)
            assert "prepared statement" in (entry.out_of_the_box.first_error or "")
            assert f"IOBENCH_PREPARED_STATEMENTS=false ({setting})" in (entry.out_of_the_box.first_error or "")
        else:
            assert entry.works_out_of_the_box, (name, entry.out_of_the_box.first_error)
            assert entry.setting_needed is None and entry.with_setting.setting == "driver default"


@needs_pgbouncer
@pytest.mark.postgres
def test_the_table_reads_as_markdown_and_json(table: CompatibilityTable) -> None:
    data = table.to_dict()
    assert data["pgbouncer"].startswith("PgBouncer 1.") and len(data["drivers"]) == len(POOLED)
    row = next(entry for entry in data["drivers"] if entry["driver"] == "psycopg2")
    assert row["works_out_of_the_box"] is True and row["setting_needed"] is None and row["error"] is None
    assert (row["failed"], row["wrong"], row["calls"]) == (0, 0, 4 * table.calls * table.concurrency)
    assert [trial["prepared_statements"] for trial in row["trials"]] == [True, False]
    assert {op["operation"] for op in row["trials"][0]["operations"]} == {"pg_sleep", "lookup", "report", "write"}
    lines = table.markdown().splitlines()
    assert lines[0].startswith("| driver | out of the box | failed | wrong answers |") and len(lines) == 2 + len(POOLED)
    calls = 4 * table.calls * table.concurrency
    assert any(line.startswith(f"| psycopg2 | works | 0 of {calls} | 0 of {calls} |") for line in lines)


# --- the service through it --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pooled_settings(settings: Settings) -> Iterator[Settings]:
    """The test database through a PgBouncer that hands its 2 server connections out in turn."""
    if not _installed():
        pytest.skip("pgbouncer is not installed (`apt-get install -y pgbouncer`; .ci/run installs it, so CI never skips this)")
    assert settings.database_url
    with PgBouncerProcess(settings.database_url, pool_size=2, server_round_robin=True,
                          statement_timeout_ms=settings.statement_timeout_ms) as bouncer:
        open_server_connections(bouncer, 2)
        yield settings.model_copy(update={"database_url": bouncer.url})


def open_server_connections(bouncer: PgBouncerProcess, count: int) -> None:
    """Have PgBouncer open ``count`` server connections (it opens one only when a client waits),
    so that even one client at a time meets them all, in turn."""
    barrier = threading.Barrier(count)

    def hold() -> None:
        with psycopg2.connect(bouncer.url) as connection, connection.cursor() as cursor:
            barrier.wait(10)
            cursor.execute("SELECT pg_sleep(0.2)")

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert bouncer.config is not None
    [pool] = [pool for pool in bouncer.show("POOLS") if pool["database"] == bouncer.config.database]
    assert pool["sv_idle"] + pool["sv_used"] == count, pool


def style_of(driver: str) -> str:
    return "async" if POOLED[driver].kind == "async" else "sync"


async def answers(service: ServiceProcess, paths: list[str], concurrency: int = 8) -> list[httpx.Response]:
    """Every path fetched, ``concurrency`` at a time: PgBouncer hands a client's successive
    transactions to whichever server connection is free (one client alone keeps meeting the same)."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
        async def get(path: str) -> httpx.Response:
            async with limit:
                return await client.get(path)

        return list(await asyncio.gather(*(get(path) for path in paths)))


@pytest.fixture(scope="module")
def pooled_service(pooled_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The service on its drivers' defaults, through PgBouncer."""
    with ServiceProcess(pooled_settings, tmp_path_factory.mktemp("pgbouncer-service") / "server.log") as service:
        yield service


@needs_pgbouncer
@pytest.mark.parametrize("driver", sorted(FAIL_BY_DEFAULT))
@pytest.mark.postgres
async def test_a_driver_that_fails_through_pgbouncer_answers_a_503_naming_the_cause(pooled_service: ServiceProcess, driver: str) -> None:
    started = time.monotonic()
    responses = await answers(pooled_service, [f"/bench/lookup/{style_of(driver)}/{driver}?id={1 + i % 7}" for i in range(48)])
    failures = [response for response in responses if response.status_code != 200]
    assert failures, f"{driver} never failed through PgBouncer with its defaults"
    for response in failures:
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["error"] == "prepared_statement" and body["driver"] == driver, body
        assert "prepared statement" in body["detail"], body
        assert f"IOBENCH_PREPARED_STATEMENTS=false ({FAIL_BY_DEFAULT[driver]})" in body["detail"], body
    assert time.monotonic() - started < 30, "no hang: every answer comes at once"
    assert pooled_service.alive


@needs_pgbouncer
@pytest.mark.postgres
async def test_with_prepared_statements_off_every_driver_serves_through_pgbouncer(
    pooled_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = pooled_settings.model_copy(update={"prepared_statements": False})
    with ServiceProcess(settings, tmp_path_factory.mktemp("pgbouncer-service-off") / "server.log") as service:
        paths = [f"/bench/{workload.name}/{style_of(driver)}/{driver}" for driver in POOLED
                 for workload in DRIVERS_BY_NAME[driver].workloads for _ in range(12)]
        responses = await answers(service, paths)
    failed = [(path, response.text) for path, response in zip(paths, responses, strict=True) if response.status_code != 200]
    assert not failed, failed[:3]


@needs_pgbouncer
@pytest.mark.postgres
def test_a_database_gone_behind_pgbouncer_is_a_quick_503_then_200_once_back(settings: Settings) -> None:
    """PgBouncer keeps the clients' connections when Postgres goes away: a query then waits for a
    server connection up to query_wait_timeout (PgBouncer's default: 120 s), then gets a 503."""
    assert settings.database_url
    upstream = Upstream.from_url(settings.database_url)
    with TcpProxy((upstream.host, upstream.port)) as proxy, \
            PgBouncerProcess(proxy.url_for(settings.database_url), pool_size=2, query_wait_timeout=2, connect_timeout=2) as bouncer:
        app_settings = settings.model_copy(update={"database_url": bouncer.url, "prepared_statements": False})
        with TestClient(create_app(app_settings)) as client:
            paths = [f"/bench/lookup/{style_of(driver)}/{driver}" for driver in POOLED]
            assert {path: client.get(path).status_code for path in paths} == dict.fromkeys(paths, 200)
            proxy.cut()
            for path in paths:
                started = time.monotonic()
                response = client.get(path)
                assert response.status_code == 503 and response.json()["error"] == "database_unavailable", (path, response.text)
                assert time.monotonic() - started < 2 * (2 + 1) + 2, (path, "waited past query_wait_timeout")
            proxy.restore()
            deadline = time.monotonic() + 15
            waiting = set(paths)
            while waiting and time.monotonic() < deadline:
                waiting = {path for path in waiting if client.get(path).status_code != 200}
                time.sleep(0.2)
            assert not waiting, f"still 503 after the database came back: {sorted(waiting)}"


def test_only_lost_statements_are_prepared_statement_503s() -> None:
    class Coded(Exception):
        def __init__(self, code: str) -> None:
            super().__init__(f"error {code}")
            self.sqlstate = code

    config = ConnectionConfig("asyncpg", "postgresql://x@h/db", PoolSize(), 1.0, 2, 100)
    assert unavailable(config, Coded("26000"), pgbouncer_setting="statement_cache_size=0").reason == "prepared_statement"
    assert unavailable(config, Coded("42P05")).reason == "prepared_statement"
    # A parameter mismatch counts only while the driver prepares on the server; PgBouncer's own
    # errors share its code.
    mismatch = Coded("08P01")
    mismatch.args = ("insufficient data left in message",)
    assert unavailable(config, mismatch).reason == "prepared_statement"
    assert unavailable(config, Coded("22P03")).reason == "prepared_statement"
    off = ConnectionConfig("asyncpg", "postgresql://x@h/db", PoolSize(), 1.0, 2, 100, prepared_statements=False)
    assert unavailable(off, mismatch).reason == "database_unavailable"
    waited = Coded("08P01")
    waited.args = ("query_wait_timeout",)
    assert unavailable(config, waited).reason == "database_unavailable"
    assert unavailable(config, Coded("57014")).reason == "statement_timeout"
    assert unavailable(config, Coded("08006")).reason == "database_unavailable"
