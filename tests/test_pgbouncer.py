"""PgBouncer (db/pgbouncer): the generated config, the managed process, and how it fails.

Every PgBouncer here is Debian's real ``pgbouncer`` started by ``PgBouncerProcess`` in front of
the real Postgres. Tests that need it skip only when the executable is missing; ``.ci/run``
installs it (``apt-get install -y pgbouncer``), so in CI they never skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import psycopg2
import pytest

from db.pgbouncer import INSTALL_HINT, PgBouncerError, PgBouncerMissingError, PgBouncerProcess, find_pgbouncer, pgbouncer_version
from db.pgbouncer.config import IGNORED_STARTUP_PARAMETERS, PgBouncerConfig, Upstream
from db.pgbouncer.process import ROOT_RUNS_AS


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


def config(url: str = "postgresql://bench:s3cret@db.example:5433/iobench", **overrides: object) -> PgBouncerConfig:
    return PgBouncerConfig(upstream=Upstream.from_url(url), port=6433, auth_file="/x/userlist.txt", **overrides)  # type: ignore[arg-type]


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
def test_it_is_pgbouncer_in_transaction_mode_with_the_pool_size_asked(bouncer: PgBouncerProcess) -> None:
    assert pgbouncer_version().startswith("PgBouncer 1.")
    assert bouncer.alive and bouncer.pid is not None
    assert psutil.Process(bouncer.pid).name() == "pgbouncer"
    [pool] = [pool for pool in bouncer.show("POOLS") if pool["database"] == bouncer.config.database]  # type: ignore[union-attr]
    assert pool["pool_mode"] == "transaction"
    # Six clients at once share at most pool_size=2 server connections.
    barrier = threading.Barrier(6)
    pids: list[int] = []

    def client() -> None:
        with psycopg2.connect(bouncer.url) as connection, connection.cursor() as cursor:
            barrier.wait(10)
            cursor.execute("SELECT pg_backend_pid(), pg_sleep(0.2)")
            pids.append(cursor.fetchone()[0])  # type: ignore[index]

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(pids) == 6 and len(set(pids)) <= 2, pids


@needs_pgbouncer
def test_the_url_is_the_same_database_on_loopback(bouncer: PgBouncerProcess, database_url: str) -> None:
    assert bouncer.url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(bouncer.url, autocommit=True) as via, psycopg.connect(database_url, autocommit=True) as direct:
        assert via.execute("SELECT current_database()").fetchone() == direct.execute("SELECT current_database()").fetchone()


@needs_pgbouncer
def test_startup_statement_timeouts_are_dropped_and_the_configured_one_holds(bouncer: PgBouncerProcess) -> None:
    """PgBouncer 1.18 refuses startup parameters it does not track; the config drops the drivers' and
    sets its own on every server connection, so a runaway query is still cancelled."""
    assert set(IGNORED_STARTUP_PARAMETERS) == {"options", "statement_timeout"}
    with psycopg.connect(bouncer.url, autocommit=True, options="-c statement_timeout=99") as connection:
        assert connection.execute("SHOW statement_timeout").fetchone() == ("4321ms",)


@needs_pgbouncer
def test_under_root_it_runs_as_an_unprivileged_user(bouncer: PgBouncerProcess) -> None:
    assert bouncer.pid is not None
    expected = ROOT_RUNS_AS if os.geteuid() == 0 else psutil.Process().username()
    assert psutil.Process(bouncer.pid).username() == expected


@needs_pgbouncer
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
def test_it_stops_with_its_parent(database_url: str) -> None:
    """A harness killed outright (SIGKILL) leaves no PgBouncer behind: its supervisor notices."""
    script = (
        "import time\n"
        "from db.pgbouncer import PgBouncerProcess\n"
        f"bouncer = PgBouncerProcess({database_url!r}).start()\n"
        "print(bouncer.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.name() == "pgbouncer"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        child.wait(5)  # raises psutil.TimeoutExpired if it lingers
    finally:
        if parent.poll() is None:
            parent.kill()


@needs_pgbouncer
def test_a_pgbouncer_that_dies_is_seen(database_url: str) -> None:
    with PgBouncerProcess(database_url) as bouncer:
        assert bouncer.pid is not None
        os.kill(bouncer.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while bouncer.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not bouncer.alive and bouncer.pid is None, "the supervisor outlived PgBouncer"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(bouncer.url, connect_timeout=2).close()


# --- how it fails --------------------------------------------------------------------------------


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
def test_a_port_in_use_fails_with_pgbouncers_own_words(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bouncer = PgBouncerProcess(database_url, port=taken.getsockname()[1], ready_timeout=5)
        with pytest.raises(PgBouncerError, match="exited with code 1 before it listened(.|\n)*Address already in use"):
            bouncer.start()
        assert not bouncer.alive
