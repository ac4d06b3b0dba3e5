"""Fixtures: a throwaway database on a real Postgres, the app in-process, the app as a real server.

The server is ``IOBENCH_TEST_SERVER_URL`` or the Postgres on 127.0.0.1:5432; where neither
answers, an embedded Postgres is started for the session. Each session creates its own
database and drops it at the end: no test relies on state left by another run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypedDict

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from app.main import create_app
from app.prepare import prepare
from app.settings import Settings
from db.bootstrap import answers
from db.embedded import EmbeddedPostgres
from db.url import LOCAL_SERVER_URL, with_database
from loadtests.server import ServiceProcess


class Seed(TypedDict):
    """The data set's shape, as Settings names it."""

    seed_rows: int
    customers: int
    categories: int
    write_slots: int


TEST_SEED: Seed = {"seed_rows": 2_000, "customers": 50, "categories": 5, "write_slots": 100}


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Postgres server's maintenance database."""
    url = os.environ.get("IOBENCH_TEST_SERVER_URL", LOCAL_SERVER_URL)
    if answers(url):
        yield url
        return
    # Not tmp_path: as root it sits in a 0700 folder the server's `nobody` user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="iobench-test-pg-"))
    try:
        with EmbeddedPostgres(root) as server:
            yield server.url
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_test_database(server_url: str) -> str:
    name = f"iobench_test_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_test_database(server_url: str, url: str) -> None:
    name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def empty_database_factory(pg_server: str) -> Iterator[Callable[[], str]]:
    """Call it to get the URL of a new empty database; all are dropped at the end of the session."""
    created: list[str] = []

    def make() -> str:
        created.append(create_test_database(pg_server))
        return created[-1]

    yield make
    for url in created:
        drop_test_database(pg_server, url)


@pytest.fixture(scope="session")
def settings(empty_database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a migrated, seeded test database with small pools and a small data set."""
    url = empty_database_factory()
    settings = Settings(
        database_url=url,
        data_dir=tmp_path_factory.mktemp("data"),
        pool_min=1,
        pool_max=5,
        acquire_timeout=5,
        default_wait_seconds=0.01,
        port=0,
        **TEST_SEED,
    )
    prepare(url, settings)
    return settings


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    """The app in-process, lifespan and pools included."""
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="session")
def live_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The app as a real uvicorn process on a free port."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ServiceProcess(settings, log) as server:
        yield server


@pytest.hookimpl(tryfirst=True)  # before -m deselects: an unmarked test must fail the run, not slip into the quick loop
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reaches a Postgres through these fixtures carries the ``postgres`` marker,
    so that ``pytest -m "not postgres and not ab"`` needs no database."""
    unmarked = [item.nodeid for item in items
                if "pg_server" in getattr(item, "fixturenames", ()) and item.get_closest_marker("postgres") is None]
    if unmarked:
        raise pytest.UsageError("tests using a Postgres without pytest.mark.postgres:\n  " + "\n  ".join(unmarked))


def pytest_report_header() -> str:
    return f"iobench test server: {os.environ.get('IOBENCH_TEST_SERVER_URL', LOCAL_SERVER_URL)} (embedded if it does not answer)"


