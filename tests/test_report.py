"""The report, its plots and run comparison on synthetic runs; the findings and the model on their own.

No server, database or ab: every record is built by ``make_record`` with every field of the
schema in loadtests/results.py, its prediction computed by the real model.

``python tests/test_report.py FOLDER`` writes the synthetic run and its report to FOLDER.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from app.catalogue import DRIVERS, SCENARIOS_BY_ID
from loadtests.compare import compare_runs, load_run
from loadtests.findings import FINDINGS, Finding, evaluate, evaluate_all
from loadtests.model import ServerShape, predict
from loadtests.plots import PING, SWEEP_P99, SWEEP_THROUGHPUT, THROUGHPUT, draw_plots
from loadtests.profiles import PROFILES, cases_for
from loadtests.report import render_report, write_report
from loadtests.results import REPORT, RESULTS, RUN

PNG = b"\x89PNG\r\n\x1a\n"
SECONDS, CONCURRENCY, TOKENS, POOL = 0.05, 25, 10, 30
POOLED = [driver.name for driver in DRIVERS if driver.pooled]
SHAPE = ServerShape(threadpool_tokens=TOKENS, pool_max={name: POOL for name in POOLED}, workers=1, cpu_count=2)
#: Uncontended latency W per workload (ms), as a 2-core laptop measures it.
W_MS = {"wait": 103.0, "pg_sleep": 105.0, "lookup": 2.2, "report": 9.0, "write": 4.0}


# --- synthetic records -------------------------------------------------------------------------


def make_record(
    key: str,
    *,
    c: int = CONCURRENCY,
    eff: float = 0.92,
    w_ms: float | None = None,
    cpu_ms: float | None = None,
    sweep: bool = False,
    error: str | None = None,
    non_2xx: int = 0,
    failed: int = 0,
    ping_p90: float | None = None,
    cpu_util: float | None = 0.45,
    server: int = 0,
    drop_percentiles: bool = False,
) -> dict[str, Any]:
    """A measurement record with every field of the schema, for the case ``key``."""
    scenario_id, _, name = key.partition("[")
    scenario = SCENARIOS_BY_ID[scenario_id]
    case = next(case for case in cases_for(scenario, SECONDS) if case.key == key)
    workload = scenario.workload.name
    if w_ms is None:
        w_ms = W_MS.get(workload) or (12.0 if "large" in name else 1.5)
    prediction = predict(scenario, c, w_ms / 1000, SHAPE)
    rps = prediction.rps * eff
    requests = max(c, 20, round(rps * 2))
    mean = c / rps * 1000
    ab = {
        "complete": requests, "failed": failed, "non_2xx": non_2xx, "failed_connect": 0, "failed_receive": failed,
        "failed_length": 0, "failed_exceptions": 0, "requests_per_second": rps, "total_seconds": requests / rps,
        "mean_ms": mean, "p50_ms": mean * 0.95, "p90_ms": mean * 1.3,
        "p99_ms": None if drop_percentiles else mean * 1.8, "max_ms": None if drop_percentiles else mean * 2.2,
        "concurrency": c, "requests": requests, "keepalive": False,
    }
    if ping_p90 is None:
        ping_p90 = w_ms * 0.9 if scenario.style == "async-blocking" else 1.6
    ping = {"count": 20, "errors": 0, "p50_ms": ping_p90 * 0.6, "p90_ms": ping_p90, "p99_ms": ping_p90 * 1.4,
            "max_ms": ping_p90 * 1.5}
    record: dict[str, Any] = {
        **case.to_dict(), "sweep": sweep, "concurrency": c, "requests": requests, "keepalive": False,
        "server": server, "threadpool_tokens": TOKENS, "uncontended_ms": w_ms, "cpu_ms_per_request": cpu_ms,
        "ab": ab, "model": prediction.to_dict(), "efficiency": eff, "ping": ping, "cpu_utilisation": cpu_util,
        "started": "2025-11-25T18:00:00+00:00", "duration_s": 3.2, "error": None,
    }
    if error:
        record.update(ab=None, efficiency=None, ping=None, cpu_utilisation=None, error=error)
    return record


def make_records() -> list[dict[str, Any]]:
    main = [
        make_record("wait/sync/time", eff=0.97),
        make_record("wait/async-blocking/time", eff=0.93),
        make_record("wait/async/asyncio", eff=0.94),
        make_record("wait/threadpool/time", eff=0.90),
        make_record("pg_sleep/sync/psycopg2", eff=0.93, server=1),
        make_record("pg_sleep/async-blocking/psycopg2", eff=0.97, server=1),  # ratio 0.104: F1 fails by a hair
        make_record("pg_sleep/threadpool/psycopg2", eff=0.88, server=1),
        make_record("pg_sleep/sync/sqlalchemy-sync", eff=0.95, server=1),
        make_record("pg_sleep/async-blocking/sqlalchemy-sync", eff=0.90, server=1),
        make_record("pg_sleep/async/asyncpg", eff=0.90, server=1),
        make_record("pg_sleep/sync/psycopg3-sync", eff=0.94, server=1),
        make_record("pg_sleep/async/psycopg3-async", eff=0.91, server=1),
        make_record("lookup/sync/psycopg2", cpu_ms=1.4, eff=0.90, server=1),
        make_record("lookup/async-blocking/psycopg2", cpu_ms=1.3, eff=1.6, server=1),
        make_record("lookup/async/asyncpg", cpu_ms=1.0, eff=0.45, cpu_util=0.97, server=1),
        make_record("lookup/async/sqlalchemy-async", cpu_ms=1.9, eff=0.90, server=1),
        make_record("report/sync/psycopg2", cpu_ms=3.0, eff=0.40, cpu_util=0.95, server=1),
        make_record("report/async/asyncpg", server=1,
                    error="AbError: ab exited with code 1: apr_socket_recv: Connection reset by peer (104)"),
        make_record("write/sync/psycopg2", eff=0.85, server=1, drop_percentiles=True),
        make_record("write/async/psycopg3-async", eff=0.80, non_2xx=40, server=1),
        make_record("file/sync/open[small.bin]", cpu_ms=0.8, eff=0.88),
        make_record("file/async/aiofiles[small.bin]", cpu_ms=1.2, eff=0.85),
        make_record("file/async-blocking/open[large.bin]", eff=0.95, ping_p90=25.0),
        make_record("file/async/aiofiles[large.bin]", eff=0.9, ping_p90=3.0),
    ]
    sweeps = [
        make_record(key, c=c, sweep=True, eff=0.93, server=1 if key.startswith("pg_sleep") else 0)
        for key in ("wait/sync/time", "wait/async/asyncio", "pg_sleep/async/asyncpg")
        for c in (1, 5, 10, 20, 40, 80, 160)
    ]
    return main + sweeps


def server_config(pid: int) -> dict[str, Any]:
    return {
        "pid": pid, "workers": 1, "event_loop": "uvloop.Loop", "threadpool_tokens": TOKENS, "threadpool_busy": 0,
        "python": "3.11.7", "implementation": "CPython", "cpu_count": 2,
        "database_url": "postgresql://iobench:***@127.0.0.1:5432/iobench",
        "pools": {name: {"driver": name, "kind": "pool", "min": 1, "max": POOL, "acquire_timeout": 10.0, "open": 1}
                  for name in POOLED},
        "pool_max_total": POOL * len(POOLED),
        "libraries": {"fastapi": "0.115.6", "starlette": "0.41.3", "uvicorn": "0.32.1", "anyio": "4.7.0",
                      "asyncpg": "0.30.0", "psycopg2-binary": "2.9.10", "psycopg": "3.2.3", "sqlalchemy": "2.0.36",
                      "aiofiles": "24.1.0", "uvloop": None},
        "settings": {"threadpool_tokens": TOKENS, "pool_max": POOL, "workers": 1},
        "database": {"server_version": "16.4", "max_connections": 100},
    }


def make_run(records: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    run = {
        "profile": PROFILES["default"].to_dict(),
        "command": ["iobench-load", "--profile", "default"],
        "started": "2025-11-25T18:00:00+00:00",
        "finished": "2025-11-25T18:06:10+00:00",
        "status": "complete",
        "planned": len(records),
        "environment": {"date": "2025-11-25T18:00:00+00:00", "cpu_count": 2, "memory_gib": 7.7,
                        "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "python": "3.11.7", "git_commit": "96288c0-dirty",
                        "ab_version": "This is ApacheBench, Version 2.3 <$Revision: 1903618 $>",
                        "database_source": "embedded Postgres 16", "load_average": [0.5, 0.4, 0.3]},
        "servers": [server_config(4101), server_config(4102)],
        "error": None,
    }
    run.update(changes)
    return run


def write_folder(folder: Path, records: list[dict[str, Any]], run: dict[str, Any], torn: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN).write_text(json.dumps(run, indent=2))
    text = "".join(json.dumps(record) + "\n" for record in records)
    if torn:
        text += json.dumps(make_record("wait/sync/time", c=40, sweep=True))[:57]  # a crash mid-write
    (folder / RESULTS).write_text(text)
    return folder


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return make_records()


@pytest.fixture(scope="module")
def run(records: list[dict[str, Any]]) -> dict[str, Any]:
    return make_run(records)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]) -> Path:
    """A partial run with a torn last line, reported by write_report against an older run (plots drawn once)."""
    root = tmp_path_factory.mktemp("runs")
    run = make_run(records, planned=len(records) + 5, status="interrupted")
    folder = write_folder(root / "new", records, run, torn=True)
    old = write_folder(root / "old", records, make_run(records))
    path = write_report(folder, compare_with=old / RESULTS)
    assert path == folder / REPORT
    return folder


@pytest.fixture(scope="module")
def plots(written: Path) -> list[Path]:
    return [written / name for name in (THROUGHPUT, PING, SWEEP_THROUGHPUT, SWEEP_P99)]


def finding_row(report: str, finding_id: str) -> str:
    rows = [line for line in report.splitlines() if line.startswith(f"| {finding_id} |")]
    assert len(rows) == 1, f"no single findings row for {finding_id}"
    return rows[0]


# --- the report --------------------------------------------------------------------------------


def test_report_has_every_section(run: dict[str, Any], records: list[dict[str, Any]], plots: list[Path]) -> None:
    report = render_report(run, records, evaluate_all(records), plots)
    for heading in ("# iobench run: default profile", "## Findings", "## The article's four cases", "## All scenarios",
                    "### wait", "### pg_sleep", "### lookup", "### file", "## Sweeps", "## Plots", "## Environment",
                    "## How to read this"):
        assert heading in report
    assert "**What this run is.**" in report and "commit `96288c0-dirty`" in report
    for figure in ("5.53", "0.17", "11.06", "8.29", "pg_sleep/threadpool/psycopg2"):
        assert figure in report
    assert "![" in report and f"({THROUGHPUT})" in report and f"[Throughput vs concurrency]({SWEEP_THROUGHPUT})" in report
    assert "16.4, max_connections = 100" in report and "asyncpg 0.30.0" in report and "uvloop.Loop" in report
    assert "X = min(c, capacity) / W" in report
    assert "partial run" not in report
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)
    assert "Compared with" not in report


def test_report_notes_explain_misses(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    report = render_report(run, records, evaluate_all(records), [])
    lines = {line.split(" | ")[0].strip("| `"): line for line in report.splitlines() if line.startswith("| `")}
    assert "CPU-bound" in lines["report/sync/psycopg2"]
    assert "error: AbError" in lines["report/async/asyncpg"]
    assert "40 failed/non-2xx" in lines["write/async/psycopg3-async"]
    assert "faster than predicted" in lines["lookup/async-blocking/psycopg2"]
    assert "threadpool" in lines["wait/sync/time"] and "pool asyncpg" not in lines["wait/sync/time"]


def test_findings_table_and_paragraphs(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    verdicts = {v.finding.id: v for v in evaluate_all(records)}
    assert verdicts["F2-wait"].status == "pass" and verdicts["F1-psycopg2"].status == "fail"
    assert verdicts["N4-report"].status == "inconclusive" and verdicts["N1-lookup"].status == "fail"
    report = render_report(run, records, list(verdicts.values()), [])
    assert "| PASS |" in finding_row(report, "F2-wait") and "| yes |" in finding_row(report, "F2-wait")
    assert "| **FAIL** |" in finding_row(report, "F1-psycopg2")
    assert "| FAIL |" in finding_row(report, "N1-lookup") and "| no |" in finding_row(report, "N1-lookup")
    assert "| INCONCLUSIVE |" in finding_row(report, "N4-report")
    assert "### Failed and inconclusive findings" in report
    assert "**F1-psycopg2: An async route calling a blocking driver collapses** (FAIL, required)" in report
    assert "Run verdict: 1 required finding(s) failed" in report
    paragraph = next(line for line in report.splitlines() if line.startswith("**N1-lookup"))
    assert "rps" in paragraph and "bound by" in paragraph and "needs >= 1.5" in paragraph


def test_partial_run_is_said(records: list[dict[str, Any]]) -> None:
    main = [r for r in records if not r["sweep"]][:5]
    run = make_run(main, planned=60, status="interrupted", finished=None, error="KeyboardInterrupt")
    report = render_report(run, main, evaluate_all(main), [])
    assert "partial run: 5 of 60 planned cases measured" in report
    assert "KeyboardInterrupt" in report
    assert "| NOT MEASURED |" in finding_row(report, "F4-file")
    running = render_report(make_run(main, status="running"), main, evaluate_all(main), [])
    assert "partial run: 5" in running


def test_empty_run_renders() -> None:
    report = render_report({}, [], evaluate_all([]), [])
    assert "## Findings" in report and "No case was measured." in report


# --- plots -------------------------------------------------------------------------------------


def test_plots_are_pngs(plots: list[Path]) -> None:
    for path in plots:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000


def test_plots_skip_what_has_no_data(tmp_path: Path, run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    assert draw_plots(tmp_path / "empty", run, []) == []
    errored = [r for r in records if r.get("error")]
    assert draw_plots(tmp_path / "errored", run, errored) == []


# --- comparison --------------------------------------------------------------------------------


def test_compare_marks_regressions(records: list[dict[str, Any]], run: dict[str, Any]) -> None:
    new = copy.deepcopy(records)
    by_case = {r["case"]: r for r in new if not r["sweep"]}
    by_case["pg_sleep/sync/psycopg3-sync"]["ab"]["requests_per_second"] *= 0.70  # 30% slower
    by_case["wait/async/asyncio"]["ab"]["requests_per_second"] *= 0.55  # F2-wait: 2.4x -> 1.3x
    by_case["lookup/sync/psycopg2"]["ab"]["requests_per_second"] *= 1.05  # noise
    new = [r for r in new if r["case"] != "write/sync/psycopg2"] + [make_record("hello/async/none")]
    result = compare_runs(new, records)
    rows = {row.case: row for row in result.rows}
    assert rows["pg_sleep/sync/psycopg3-sync"].status == "regression"
    assert rows["pg_sleep/sync/psycopg3-sync"].change_pct == pytest.approx(-30)
    assert rows["lookup/sync/psycopg2"].status == "same"
    assert rows["write/sync/psycopg2"].status == "gone" and rows["hello/async/none"].status == "new"
    assert rows["report/async/asyncpg"].status == "same"  # errored in both
    changes = {change.id: change for change in result.verdict_changes}
    assert (changes["F2-wait"].old, changes["F2-wait"].new) == ("pass", "fail") and changes["F2-wait"].regression
    assert result.has_regressions
    report = render_report(run, new, evaluate_all(new), [], result)
    assert "## Compared with old run" in report and "**REGRESSION**" in report
    assert "| F2-wait | PASS | FAIL | yes | **REGRESSION** |" in report


def test_compare_same_run_is_quiet(records: list[dict[str, Any]]) -> None:
    result = compare_runs(records, records)
    assert not result.has_regressions and not result.verdict_changes
    assert {row.status for row in result.rows} == {"same"}


# --- write_report ------------------------------------------------------------------------------


def test_write_report_survives_a_torn_line(written: Path, records: list[dict[str, Any]]) -> None:
    report = (written / REPORT).read_text()
    assert f"partial run: {len(records)} of {len(records) + 5} planned cases measured" in report
    assert "## Compared with" in report and "No finding changed its verdict." in report
    assert "## Sweeps" in report and "**REGRESSION**" not in report
    for name in (THROUGHPUT, PING, SWEEP_THROUGHPUT, SWEEP_P99):
        assert f"]({name})" in report


def test_draw_plots_returns_what_it_wrote(tmp_path: Path, run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    few = [r for r in records if r["case"].startswith("wait/") and not r["sweep"]]
    assert [path.name for path in draw_plots(tmp_path, run, few)] == [THROUGHPUT, PING]


def test_load_run_takes_a_folder_or_its_results(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    folder = write_folder(tmp_path / "run", records[:3], make_run(records[:3]), torn=True)
    for path in (folder, folder / RESULTS):
        run, loaded = load_run(path)
        assert run["profile"]["name"] == "default" and len(loaded) == 3
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path / "missing")


# --- findings.evaluate -------------------------------------------------------------------------

COLLAPSE = next(f for f in FINDINGS if f.id == "F1-wait")
ASYNC_WINS = next(f for f in FINDINGS if f.id == "F2-wait")


def test_finding_passes() -> None:
    verdict = evaluate(ASYNC_WINS, [make_record("wait/async/asyncio"), make_record("wait/sync/time")])
    assert verdict.status == "pass"
    assert verdict.ratio == pytest.approx(2.5, rel=0.02) and verdict.predicted_ratio == pytest.approx(2.5, rel=0.02)
    assert verdict.reason == ASYNC_WINS.why


def test_finding_fails_with_the_bounds() -> None:
    records = [make_record("wait/async/asyncio", eff=0.5), make_record("wait/sync/time", eff=0.95)]
    verdict = evaluate(ASYNC_WINS, records)
    assert verdict.status == "fail" and verdict.ratio < 1.5
    assert "bound by clients" in verdict.reason and "by threadpool" in verdict.reason
    assert "50% of its prediction" in verdict.reason


def test_finding_fails_where_theory_agrees() -> None:
    # With 10 threads, async-blocking / sync is 1/10 in theory: F1's "<= 0.1" is a coin toss.
    records = [make_record("wait/async-blocking/time", eff=0.97), make_record("wait/sync/time", eff=0.93)]
    verdict = evaluate(COLLAPSE, records)
    assert verdict.status == "fail" and verdict.predicted_ratio == pytest.approx(0.1)
    few = [make_record("wait/async-blocking/time", c=8), make_record("wait/sync/time", c=8)]
    assert evaluate(COLLAPSE, few).status == "fail" and "should not hold" in evaluate(COLLAPSE, few).reason


def test_finding_inconclusive_on_errors() -> None:
    records = [make_record("wait/async/asyncio", failed=3, non_2xx=2), make_record("wait/sync/time")]
    verdict = evaluate(ASYNC_WINS, records)
    assert verdict.status == "inconclusive" and "failed or non-2xx" in verdict.reason
    errored = [make_record("wait/async/asyncio", error="AbError: boom"), make_record("wait/sync/time")]
    assert evaluate(ASYNC_WINS, errored).status == "inconclusive"


def test_finding_not_measured() -> None:
    verdict = evaluate(ASYNC_WINS, [make_record("wait/sync/time")])
    assert verdict.status == "not measured" and "wait/async/asyncio" in verdict.reason
    sweep_only = [make_record("wait/async/asyncio", sweep=True), make_record("wait/sync/time")]
    assert evaluate(ASYNC_WINS, sweep_only).status == "not measured"


def test_finding_needs_more_clients_than_threads() -> None:
    assert ASYNC_WINS.needs_concurrency_above_threadpool
    records = [make_record("wait/async/asyncio", c=TOKENS), make_record("wait/sync/time", c=TOKENS)]
    verdict = evaluate(ASYNC_WINS, records)
    assert verdict.status == "inconclusive" and "not above the threadpool" in verdict.reason
    assert evaluate(COLLAPSE, [make_record("wait/async-blocking/time", c=TOKENS),
                               make_record("wait/sync/time", c=TOKENS)]).status != "inconclusive"


def test_ping_finding_uses_ping() -> None:
    finding = Finding("T", "t", "file/async-blocking/open[large.bin]", "file/async/aiofiles[large.bin]",
                      "ping_p50_ms", ">=", 3.0, True, "", "why")
    records = [make_record("file/async-blocking/open[large.bin]", ping_p90=30.0),
               make_record("file/async/aiofiles[large.bin]", ping_p90=2.0)]
    verdict = evaluate(finding, records)
    assert verdict.status == "pass" and verdict.ratio == pytest.approx(15) and verdict.predicted_ratio is None


# --- model.predict -----------------------------------------------------------------------------


def test_sync_is_bound_by_the_threadpool() -> None:
    p = predict(SCENARIOS_BY_ID["wait/sync/time"], 25, 0.1, SHAPE)
    assert p.bound == "threadpool" and p.rps == pytest.approx(TOKENS / 0.1)
    assert p.capacity == pytest.approx(TOKENS) and p.bounds["clients"] == pytest.approx(250)


def test_async_blocking_is_bound_by_the_event_loop() -> None:
    p = predict(SCENARIOS_BY_ID["pg_sleep/async-blocking/psycopg2"], 25, 0.1, SHAPE)
    assert p.bound == "event loop" and p.rps == pytest.approx(1 / 0.1) and p.capacity == pytest.approx(1)


def test_threadpool_style_holds_a_thread_for_half_of_w() -> None:
    p = predict(SCENARIOS_BY_ID["wait/threadpool/time"], 25, 0.1, SHAPE)
    assert p.bound == "threadpool" and p.rps == pytest.approx(TOKENS / 0.05)


def test_async_with_a_pool_smaller_than_c_is_bound_by_the_pool() -> None:
    shape = ServerShape(threadpool_tokens=TOKENS, pool_max={"asyncpg": 8}, cpu_count=2)
    p = predict(SCENARIOS_BY_ID["pg_sleep/async/asyncpg"], 25, 0.1, shape)
    assert p.bound == "pool asyncpg" and p.rps == pytest.approx(80)
    assert predict(SCENARIOS_BY_ID["pg_sleep/async/asyncpg"], 5, 0.1, shape).bound == "clients"


# --- a sample report ---------------------------------------------------------------------------

if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sample-report")
    sample = make_records()
    folder = write_folder(target, sample, make_run(sample))
    print(write_report(folder))
