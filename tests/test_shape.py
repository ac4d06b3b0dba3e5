"""The server measured against its profile's shape (loadtests.shape), `iobench serve --like`, and selections
that judge only what they measured."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from synthetic import make_records, make_run
from typer.testing import CliRunner

from app.cli import _profile_shape, cli
from app.settings import Settings
from loadtests.cli import verdict_code
from loadtests.errors import EXIT_PASS
from loadtests.findings import FINDINGS, evaluate_all
from loadtests.profiles import PROFILES
from loadtests.server import ServiceProcess
from loadtests.shape import connection_shortfall, consequences, differences, matching_command, run_differences

QUICK = PROFILES["quick"]


def config_of(settings: Settings) -> dict[str, Any]:
    """What /config says of a service built from ``settings`` (the parts the shape check reads)."""
    return {"threadpool_tokens": settings.threadpool_tokens, "workers": settings.workers, "cpu_count": 2,
            "settings": settings.model_dump(mode="json", exclude={"database_url"})}


def test_iobench_serve_defaults_differ_from_the_quick_profile_and_the_fix_is_printed() -> None:
    found = differences(config_of(Settings(_env_file=None)), QUICK.declared())
    assert [d.describe() for d in found] == [
        "threadpool tokens: the server runs 40, the profile assumes 16",
        "pool size: the server runs pools of 10, the profile assumes pools of 30",
    ]
    assert matching_command(found) == "IOBENCH_THREADPOOL_TOKENS=16 IOBENCH_POOL_MAX=30 iobench serve"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_serve_like_a_profile_matches_it(profile: str) -> None:
    shaped = Settings(_env_file=None, **_profile_shape(profile))
    assert differences(config_of(shaped), PROFILES[profile].declared(), PROFILES[profile].db_rtt_ms) == []


def test_the_harness_own_variants_are_no_difference() -> None:
    # --worker-levels splits the threadpool and pools across workers; --rtt-levels adds a distance: both as planned.
    split = Settings(_env_file=None, workers=2, threadpool_tokens=8, pool_max=20)
    far = Settings(_env_file=None, threadpool_tokens=16, pool_max=40, db_rtt_ms=5)
    production = PROFILES["production"]
    run = {"profile": production.to_dict(), "servers": [config_of(split), config_of(far)]}
    assert run_differences(run) == []
    assert [d.setting for d in run_differences({**run, "profile": PROFILES["default"].to_dict()})] == [
        "uvicorn workers", "database distance"]
    assert matching_command(run_differences({**run, "profile": PROFILES["default"].to_dict()})) == \
        "IOBENCH_WORKERS=1 iobench serve --db-rtt 0"


def test_a_fail_that_the_servers_shape_explains_says_so() -> None:
    records = make_records()
    run = make_run(records, servers=[config_of(Settings(_env_file=None))])  # 40 tokens, pools of 10, c = 40
    verdicts = [dataclasses.replace(v, status="fail") if v.finding.id in ("F2-wait", "F2-asyncpg") else v
                for v in evaluate_all(records, run)]
    found = {c.verdict.finding.id: c for c in consequences(verdicts, run)}
    assert {"F2-wait", "F2-asyncpg"} <= set(found)
    assert all(c.verdict.status in ("fail", "inconclusive") for c in found.values())
    assert found["F2-wait"].measured_ratio == pytest.approx(1.0) and found["F2-wait"].declared_ratio == pytest.approx(2.5)
    assert "F2-wait fail follows from the server's shape" in found["F2-wait"].describe()
    assert consequences(verdicts, make_run(records)) == [], "on the profile's shape a fail is the drivers'"


def test_a_selection_judges_only_the_findings_it_measured() -> None:
    records = make_records()
    chosen = {"lookup/async/asyncpg", "lookup/sync/psycopg2"}
    run = make_run([r for r in records if r["case"] in chosen], selection=True, selected_cases=sorted(chosen))
    verdicts = evaluate_all([r for r in records if r["case"] in chosen], run)
    statuses = {v.finding.id: v.status for v in verdicts}
    assert all(statuses[f.id] == "not selected" for f in FINDINGS
               if f.numerator not in chosen or f.denominator not in chosen)
    assert verdict_code(verdicts) == EXIT_PASS
    # A whole profile keeps the rule: a required finding not measured is inconclusive.
    whole = evaluate_all([r for r in records if r["case"] in chosen], make_run(records))
    assert any(v.status == "not measured" and v.finding.required for v in whole)


def test_a_target_whose_pools_outgrow_its_postgres_is_told() -> None:
    served = {**config_of(Settings(_env_file=None, **_profile_shape("quick"))), "pool_max_total": 390,
              "database": {"max_connections": 100}}
    note = connection_shortfall(served)
    assert note is not None and "390 connections" in note and "allows 100" in note
    assert connection_shortfall({**served, "database": {"max_connections": 1200}}) is None
    assert connection_shortfall({**served, "database": {"error": "down"}}) is None


def test_serve_like_an_unknown_profile_is_bad_input() -> None:
    done = CliRunner().invoke(cli, ["serve", "--like", "nope"])
    assert done.exit_code == 2 and "unknown profile 'nope' for --like" in done.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served_like_quick(empty_database_factory: Callable[[], str], tmp_path: Path) -> Iterator[str]:
    """`iobench serve --like quick` as a user starts it, on a fresh database."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": empty_database_factory(), "IOBENCH_SEED_ROWS": "2000",
           "IOBENCH_DATA_DIR": str(tmp_path / "data")}
    with open(tmp_path / "serve.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--like", "quick", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _measure(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "loadtests", "--target", url, "--profile", "quick", "--scenario", "wait/sync/time",
               "--repeat", "1", "--max-repeat", "1", "--out", str(tmp_path / "run")]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "COLUMNS": "200"})


needs_ab = pytest.mark.skipif(shutil.which("ab") is None, reason="ApacheBench (ab) not installed")


@needs_ab
@pytest.mark.postgres
@pytest.mark.ab
def test_a_target_shaped_otherwise_is_named_before_the_findings(live_server: ServiceProcess, tmp_path: Path) -> None:
    # The session's live server: AnyIO's 40 tokens and pools of 5, against the quick profile's 16 and 30.
    done = _measure(live_server.url, tmp_path)
    output = done.stdout + done.stderr
    assert "The server measured is not shaped like the quick profile" in output
    assert "threadpool tokens: the server runs 40, the profile assumes 16" in output
    assert "pool size: the server runs pools of 5, the profile assumes pools of 30" in output
    assert "IOBENCH_THREADPOOL_TOKENS=16 IOBENCH_POOL_MAX=30 iobench serve" in output
    assert "iobench serve --like quick" in output
    assert output.index("not shaped like") < output.index("not judged"), "said before the findings"
    # One scenario is a selection: the findings it does not measure are left out, and nothing went wrong.
    assert "not judged (this selection measured not all of their cases)" in output
    assert done.returncode == EXIT_PASS, output
    # A service started without a completion log is counted from ab's -g file, in whole seconds.
    [record] = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert record["error"] is None and record["steady"]["method"] == "ab -g whole seconds", record


@needs_ab
@pytest.mark.postgres
@pytest.mark.ab
def test_a_target_served_like_the_profile_has_no_difference(served_like_quick: str, tmp_path: Path) -> None:
    done = _measure(served_like_quick, tmp_path)
    output = done.stdout + done.stderr
    assert "not shaped like" not in output and "follows from the server's shape" not in output
    assert done.returncode == EXIT_PASS, output
    # `iobench serve` keeps a completion log of its own, which the harness on the same machine reads.
    [record] = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert record["error"] is None and record["steady"]["method"] != "ab -g whole seconds", record
