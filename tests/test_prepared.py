"""A service started on a database `iobench prepare` never migrated refuses to start, and says why."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.prepare import prepare
from app.prepared import DatabaseNotPrepared
from app.settings import Settings
from db import migrate
from db.url import with_database
from loadtests.server import free_port

pytestmark = pytest.mark.postgres  # every test here runs against the session's test database


@pytest.fixture(params=["empty", "missing", "older revision"])
def unprepared_url(request: pytest.FixtureRequest, settings: Settings, pg_server: str,
                   empty_database_factory: Callable[[], str]) -> str:
    if request.param == "missing":
        return with_database(pg_server, f"iobench_test_missing_{secrets.token_hex(4)}")
    url = empty_database_factory()
    if request.param == "older revision":
        prepare(url, settings)
        migrate.downgrade(url, "0001")
    return url


def test_the_app_refuses_to_start_on_an_unprepared_database(settings: Settings, unprepared_url: str) -> None:
    app = create_app(settings.model_copy(update={"database_url": unprepared_url}))
    with pytest.raises(DatabaseNotPrepared, match=r"Run `iobench prepare`") as refused:
        with TestClient(app):
            pass
    assert "password" not in str(refused.value)


def test_plain_uvicorn_on_a_never_migrated_database_exits_with_the_message(
    empty_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": empty_database_factory(), "IOBENCH_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--port", str(port)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 3, output  # uvicorn's code for a failed startup
    assert "is not prepared: its schema revision is none (never migrated)" in output
    assert "Run `iobench prepare`" in output
    assert "Application startup failed" in output
