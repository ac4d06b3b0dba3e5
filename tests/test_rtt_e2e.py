"""The database a network hop away: --rtt-levels end to end (wire proxy, real service, Postgres and ab)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from loadtests.results import HTML_REPORT, REPORT, read_run

pytestmark = [pytest.mark.ab, pytest.mark.postgres,
              pytest.mark.skipif(shutil.which("ab") is None, reason="ApacheBench (ab) not installed")]


def test_an_rtt_sweep_measures_each_level_through_the_proxy_and_reports_the_crossover(
    empty_database_factory: Callable[[], str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "DATABASE_URL": empty_database_factory(), "IOBENCH_SEED_ROWS": "2000",
           "IOBENCH_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "loadtests", "--profile", "quick", "--scenario", "lookup/sync/psycopg2",
               "--scenario", "lookup/async/asyncpg", "--rtt-levels", "0,2", "--repeat", "2", "--max-repeat", "2",
               "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output  # a selection judges what it measured: no required finding is in it
    run, records = read_run(out)
    assert run["status"] == "complete", output
    assert 1.5 < run["rtt_measured"]["2"] < 3.5, run["rtt_measured"]
    assert "measured 2." in output or "measured 1." in output or "measured 3." in output
    assert "crossover lookup: lookup/async/asyncpg over lookup/sync/psycopg2 reaches 1.5x: " in output  # printed, not only in the report
    by_rtt = {(r["case"], r["rtt_ms"]) for r in records}
    assert by_rtt == {(case, rtt) for case in ("lookup/sync/psycopg2", "lookup/async/asyncpg") for rtt in (0.0, 2.0)}
    far = [r for r in records if r["rtt_ms"] == 2.0]
    assert all(r["variant"] and r["cpu"] and r["cpu"]["proxy_s"] and r["cpu"]["proxy_s"] > 0 for r in far), "the proxy's CPU is measured"
    assert all(not r["variant"] for r in records if r["rtt_ms"] == 0.0)
    report = (out / REPORT).read_text()
    assert "## The database a network hop away" in report and "Crossover, measured" in report
    assert "(measured added RTT: 2 ms →" in report
    assert (out / "rtt.png").exists() and 'id="rtt"' in (out / HTML_REPORT).read_text()
