"""End to end: iobench-load check on a small claims file, against the real service and Postgres, with real ab.

Kept short (it runs in CI's budget): three claims on three cases, one setup, the quick profile's three rounds
and no extra looks. The example claims (examples/claims) take several minutes: they are run by hand and by the
workflow in .github/workflows/claims.yml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from junitparser import JUnitXml

from loadtests.check import CHECK, JUNIT, SUMMARY
from loadtests.errors import EXIT_FINDING_FAILED, EXIT_INCONCLUSIVE, EXIT_PASS
from loadtests.results import REPORT, read_run

pytestmark = [pytest.mark.ab, pytest.mark.postgres,
              pytest.mark.skipif(shutil.which("ab") is None, reason="ApacheBench (ab) not installed")]

CLAIMS = """
description = "A small team file: the end-to-end test's"

[[claim]]
id = "async-beats-def-on-waits"
statement = "async def routes that await beat def routes once clients outnumber threads"
source = "https://fastapi.tiangolo.com/async/"
scenario = "wait/async/asyncio"
baseline = "wait/sync/time"
op = ">="
threshold = "model"

[[claim]]
id = "ping-stays-fast-beside-awaits"
statement = "/ping's p99 stays under a second beside awaiting routes"
source = "docs/slo.md"
required = false
scenario = "wait/async/asyncio"
metric = "ping_p99_ms"
op = "<="
threshold = 1000.0

[[claim]]
id = "lookup-two-round-trips"
statement = "A psycopg2 lookup in autocommit takes one round trip per statement"
source = "https://www.psycopg.org/docs/connection.html#connection.autocommit"
scenario = "lookup/sync/psycopg2"
metric = "round_trips"
op = "<="
threshold = 2.0
"""


def test_check_measures_only_the_named_cases_and_writes_junit(empty_database_factory: Callable[[], str], tmp_path: Path) -> None:
    claims = tmp_path / "team.toml"
    claims.write_text(CLAIMS)
    out, junit = tmp_path / "check", tmp_path / "out.xml"
    env = {**os.environ, "DATABASE_URL": empty_database_factory(), "IOBENCH_SEED_ROWS": "2000",
           "IOBENCH_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "loadtests", "check", str(claims), "--out", str(out), "--junit", str(junit),
               "--max-repeat", "3"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode in (EXIT_PASS, EXIT_FINDING_FAILED, EXIT_INCONCLUSIVE), output

    cases = [case for suite in JUnitXml.fromfile(str(junit)) for case in suite]
    assert [case.name.split(":")[0] for case in cases] == ["async-beats-def-on-waits", "ping-stays-fast-beside-awaits",
                                                           "lookup-two-round-trips"]
    assert (out / JUNIT).read_text() == junit.read_text() and "| lookup-two-round-trips: " in (out / SUMMARY).read_text()

    run, records = read_run(out / "setup-1")
    assert run["status"] == "complete", output
    assert {r["case"] for r in records} == {"wait/async/asyncio", "wait/sync/time", "lookup/sync/psycopg2"}, "only the named cases"
    assert [c["id"] for c in run["claims"]] == run["findings"] and "## Findings" in (out / "setup-1" / REPORT).read_text()
    check = json.loads((out / CHECK).read_text())
    assert check["setups"][0]["cases"] == ["wait/async/asyncio", "wait/sync/time", "lookup/sync/psycopg2"]
    verdicts = {v["id"]: v for v in check["verdicts"]}
    assert verdicts["lookup-two-round-trips"]["status"] == "pass", verdicts  # counted on the wire: exactly 2
    assert check["exit_code"] == done.returncode
    assert (done.returncode == EXIT_PASS) == all(v["status"] == "pass" for v in verdicts.values() if v["required"])
