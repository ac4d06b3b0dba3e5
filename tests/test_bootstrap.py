"""Getting a database without docker: DATABASE_URL, else localhost:5432, else embedded; and `iobench serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest

from app import prepare as app_prepare
from app.catalogue import SCENARIOS
from app.settings import Settings
from db import bootstrap
from loadtests.server import free_port, tail


def test_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    database = app_prepare.locate(Settings(database_url="postgresql+psycopg2://u:p@db.example:5432/x"))
    assert (database.source, database.url) == ("DATABASE_URL", "postgresql://u:p@db.example:5432/x")
    assert "p@" not in database.describe()


@pytest.mark.postgres
def test_localhost_when_it_answers(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "LOCAL_SERVER_URL", pg_server)
    database = bootstrap.locate(None)
    assert database.source == "localhost:5432" and database.url.endswith("/iobench") and database.embedded is None


@pytest.mark.postgres
def test_embedded_when_nothing_answers(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setattr(bootstrap, "LOCAL_SERVER_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    root = Path("/tmp") / f"iobench-test-embedded-{os.getpid()}"
    database = bootstrap.locate(None, embedded_root=root)
    try:
        assert database.source == "embedded" and database.embedded is not None
        assert bootstrap.create_database(database.url) is True
        assert bootstrap.create_database(database.url) is False
        with psycopg.connect(database.url) as connection:
            assert connection.execute("select current_database()").fetchone() == ("iobench",)
    finally:
        database.close()
    assert not database.embedded.running


@pytest.mark.postgres
def test_serve_prepares_the_database_and_serves_every_scenario(
    empty_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    """The README's service command on an empty database: it migrates, seeds, then answers."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "DATABASE_URL": empty_database_factory(), "IOBENCH_SEED_ROWS": "500",
           "IOBENCH_DATA_DIR": str(tmp_path / "data"), "IOBENCH_POOL_MAX": "3"}
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, tail(log)
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, tail(log)
            time.sleep(0.2)
        listed = {s["path"] for s in httpx.get(f"{base}/scenarios").json()["scenarios"]}
        assert listed == {s.path for s in SCENARIOS}
        for scenario in SCENARIOS:
            params = {"seconds": 0} if "seconds" in scenario.workload.parameters else {}
            response = httpx.get(base + scenario.path, params=params, timeout=10)
            assert response.status_code == 200, (scenario.id, response.text)
        assert "database:" in tail(log) and "DATABASE_URL" in tail(log)
    finally:
        process.terminate()
        process.wait(10)
