"""--pgbouncer end to end: each driver's compatibility, then the same cases direct and through PgBouncer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtests.results import REPORT, read_run

pytestmark = [
    pytest.mark.ab, pytest.mark.postgres,
    pytest.mark.skipif(shutil.which("ab") is None, reason="ApacheBench (ab) not installed"),
    pytest.mark.skipif(shutil.which("pgbouncer") is None and not os.path.exists("/usr/sbin/pgbouncer"),
                       reason="pgbouncer is not installed (`apt-get install -y pgbouncer`; .ci/run installs it)"),
]


def test_a_pgbouncer_run_reports_compatibility_and_the_cost(empty_database_factory: Callable[[], str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "DATABASE_URL": empty_database_factory(), "IOBENCH_SEED_ROWS": "2000",
           "IOBENCH_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "loadtests", "--profile", "quick", "--scenario", "lookup/sync/psycopg2",
               "--scenario", "lookup/async/asyncpg", "--pgbouncer", "--repeat", "2", "--max-repeat", "2", "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output  # a selection judges what it measured: no required finding is in it
    run, records = read_run(out)
    assert run["status"] == "complete", output
    table = {entry["driver"]: entry for entry in run["pgbouncer"]["drivers"]}
    assert table["psycopg2"]["works_out_of_the_box"] and not table["asyncpg"]["works_out_of_the_box"]
    assert table["asyncpg"]["setting_needed"] == "statement_cache_size=0" and table["asyncpg"]["works_with_setting"]
    through = [r for r in records if r["via"] == "pgbouncer"]
    assert {r["case"] for r in through} == {"lookup/sync/psycopg2", "lookup/async/asyncpg"}
    assert all(r["variant"] and not r["error"] and r["ab"] and r["ab"]["non_2xx"] == 0 for r in through), "every driver at its setting works"
    assert all(r["pgbouncer"] and r["pgbouncer"]["server_connections"] <= r["pgbouncer"]["pool_size"] for r in through)
    assert all(r["cpu"] and r["cpu"]["pgbouncer_s"] and r["cpu"]["pgbouncer_s"] > 0 for r in through)
    report = (out / REPORT).read_text()
    assert "## Through PgBouncer" in report and "`statement_cache_size=0`" in report
