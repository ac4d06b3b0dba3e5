"""The harness under faults: a service dying mid-run, bad CLI input, no ab, Ctrl-C; and the safety defaults.

A run that cannot go on keeps what it measured (results.jsonl, a report that says partial)
and exits 3; Ctrl-C exits 130 and SIGTERM 143 with the same guarantees, leaving no server
behind; bad input is one line starting with ``error:`` and exit 2, before any folder, server
or ab; a missing ab is the install hint and exit 3.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvicorn
from typer.testing import CliRunner

from app.settings import Settings
from loadtests.cli import cli
from loadtests.errors import EXIT_ENVIRONMENT, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE
from loadtests.results import Record, read_run
from loadtests.runner import ServiceDied
from loadtests.server import ServiceProcess, free_port

pytestmark = pytest.mark.skipif(not any((Path(p) / "ab").exists() for p in os.environ.get("PATH", "").split(os.pathsep)),
                                reason="ApacheBench (ab) not installed")

FAILURES_PAGE = Path(__file__).resolve().parent.parent / "docs" / "failures.md"
# Three fast local cases (two 10 ms waits each), 40 requests at c=4, one round: about a second per case.
SCENARIOS = ("wait/sync/time", "wait/threadpool/time", "wait/async/asyncio")
HARNESS = [sys.executable, "-m", "loadtests", "--profile", "quick", *(arg for s in SCENARIOS for arg in ("--scenario", s)),
           "-n", "40", "-c", "4", "--seconds", "0.01", "--repeat", "1", "--max-repeat", "1"]
#: For the tests that stop a run midway: cases of about 2 s each (400 requests of 2 x 10 ms, 4 at a time), so
#: the stop lands in the second case with seconds to spare, not in a run of well under a second.
LONG_CASES = ("-n", "400")


# --- running the harness as a process --------------------------------------------------------


@pytest.fixture
def harness_env(settings: Settings) -> dict[str, str]:
    """The environment of a harness that prepares and serves the session's (already seeded) test database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IOBENCH_") and key != "DATABASE_URL"}
    assert settings.database_url is not None
    env.update({
        "DATABASE_URL": settings.database_url, "IOBENCH_DATA_DIR": str(settings.data_dir),
        "IOBENCH_SEED_ROWS": str(settings.seed_rows), "IOBENCH_CUSTOMERS": str(settings.customers),
        "IOBENCH_CATEGORIES": str(settings.categories), "IOBENCH_WRITE_SLOTS": str(settings.write_slots),
    })
    return env


def _terminal_sigint() -> None:
    """In the child, before exec: SIGINT as a terminal's foreground job has it. Under a shell's background
    job (`make test &`, CI runners) it starts ignored, an ignored signal stays ignored across exec, and a
    Python started so never turns Ctrl-C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """``python -m loadtests`` in its own session (as a terminal's foreground job would be), output to a file."""

    def __init__(self, out: Path, env: dict[str, str], *extra: str) -> None:
        self.out = out
        self.log = out.parent / f"{out.name}.out"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([*HARNESS, "--out", str(out), *extra], env=env, cwd=out.parent,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_terminal_sigint)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, records: int = 1, timeout: float = 60.0) -> tuple[dict[str, Any], list[Record]]:
        """run.json and results.jsonl once ``records`` measurements are in (the harness still running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the harness exited early ({self.process.returncode}):\n{self.output}"
            if (self.out / "run.json").exists():
                run, found = read_run(self.out)
                if len(found) >= records:
                    return run, found
            time.sleep(0.02)
        raise AssertionError(f"no {records} records after {timeout} s:\n{self.output}")

    def finish(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"the harness did not stop within {timeout} s:\n{self.output}") from None

    def kill_servers(self) -> None:
        """Leave nothing behind if a test failed half-way: only the pids this run recorded, only if uvicorn."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        run, _ = read_run(self.out) if self.out.exists() else ({}, [])
        for server in run.get("servers", []):
            if _is_our_uvicorn(server.get("pid")):
                os.kill(server["pid"], signal.SIGKILL)


def _is_our_uvicorn(pid: int | None) -> bool:
    try:
        return pid is not None and "app.main:create_app" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.kill_servers()


def assert_partial(run: Run, code: int, status: str) -> tuple[dict[str, Any], list[Record]]:
    """What every stopped run keeps: the records so far, run.json's status, a report that says partial."""
    assert code in ((EXIT_SIGINT, EXIT_SIGTERM) if status == "interrupted" else (EXIT_ENVIRONMENT,)), run.output
    meta, records = read_run(run.out)
    assert meta["status"] == status, meta
    # One round of the block's sequence: the reference (wait/sync/time) between the other two.
    assert meta["planned"] == sum(len(block["sequence"]) for block in meta["blocks"]) == 3
    assert 1 <= len(records) < meta["planned"], [r["case"] for r in records]
    first = records[0]
    assert first["case"] in SCENARIOS and first["error"] is None and first["ab"] is not None
    assert first["steady"] is not None and first["steady"]["completions"] == first["requests"] <= first["ab"]["complete"]
    report = (run.out / "report.md").read_text()
    assert f"partial run: {len(records)} of {meta['planned']} planned measurements (status: {status})" in report
    assert first["case"] in report, "the measured case is in the report"
    return meta, records


def assert_died_during_last_case(meta: dict[str, Any], records: list[Record], output: str) -> None:
    last = records[-1]
    assert last["error"] or (last["ab"] and last["ab"]["failed"]), last  # the case that met the dead server is kept
    assert f"the service stopped answering during {last['case']}" in meta["error"], meta["error"]
    assert "failed:" in output and last["case"] in output


# --- (a) the service dying mid-run ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.ab
def test_a_target_dying_mid_run_keeps_the_results_and_exits_3(
    settings: Settings, harness_env: dict[str, str], tmp_path: Path, runs: list[Run]
) -> None:
    server = ServiceProcess(settings.model_copy(update={"pool_min": 0}), tmp_path / "target.log").start()
    try:
        run = Run(tmp_path / "run", harness_env, "--target", server.url)
        runs.append(run)
        run.wait_for(records=1)
        assert server.pid is not None
        os.killpg(server.pid, signal.SIGKILL)
        code = run.finish()
    finally:
        server.stop()
    meta, records = assert_partial(run, code, "failed")
    assert_died_during_last_case(meta, records, run.output)
    assert "(not ours: no log)" in meta["error"]
    assert "The run stopped with an error" in (run.out / "report.md").read_text()


@pytest.mark.postgres
@pytest.mark.ab
def test_a_started_server_dying_mid_run_keeps_the_results_and_exits_3(
    harness_env: dict[str, str], tmp_path: Path, runs: list[Run]
) -> None:
    run = Run(tmp_path / "run", harness_env, *LONG_CASES)
    runs.append(run)
    meta, _ = run.wait_for(records=1)
    pid = meta["servers"][0]["pid"]
    assert _is_our_uvicorn(pid), meta["servers"][0]
    os.kill(pid, signal.SIGKILL)
    code = run.finish()
    meta, records = assert_partial(run, code, "failed")
    assert_died_during_last_case(meta, records, run.output)
    assert "its log ends" in meta["error"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# --- (d) Ctrl-C -------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.ab
def test_ctrl_c_writes_a_partial_report_exits_130_and_stops_the_server(
    harness_env: dict[str, str], tmp_path: Path, runs: list[Run]
) -> None:
    run = Run(tmp_path / "run", harness_env, *LONG_CASES)
    runs.append(run)
    meta, _ = run.wait_for(records=1)
    pid = meta["servers"][0]["pid"]
    os.killpg(run.process.pid, signal.SIGINT)  # what a terminal sends its foreground job (ab included)
    code = run.finish()
    meta, _ = assert_partial(run, code, "interrupted")
    assert code == EXIT_SIGINT and meta["error"] == "interrupted by the user (Ctrl-C)"
    assert "interrupted:" in run.output
    assert not _is_our_uvicorn(pid), "the harness's server outlived Ctrl-C"
    assert not psutil.pid_exists(pid)


@pytest.mark.postgres
@pytest.mark.ab
def test_sigterm_is_handled_like_ctrl_c_and_exits_143(harness_env: dict[str, str], tmp_path: Path, runs: list[Run]) -> None:
    """`docker stop` and CI timeouts send SIGTERM to the harness alone: a partial report, no server left behind."""
    run = Run(tmp_path / "run", harness_env, *LONG_CASES)
    runs.append(run)
    meta, _ = run.wait_for(records=1)
    pid = meta["servers"][0]["pid"]
    run.process.send_signal(signal.SIGTERM)
    code = run.finish()
    meta, _ = assert_partial(run, code, "interrupted")
    assert code == EXIT_SIGTERM and meta["error"] == "stopped by SIGTERM"
    assert not _is_our_uvicorn(pid), "the harness's server outlived SIGTERM"


# --- (b) bad CLI input, (c) no ab: one line, exit 2, nothing started ---------------------------


@pytest.fixture
def no_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder where any load would show: a fake ab that leaves a mark, no server, no database."""
    monkeypatch.chdir(tmp_path)  # a default run folder would appear here as runs/
    for key in [key for key in os.environ if key.startswith("IOBENCH_")]:
        monkeypatch.delenv(key)
    mark = tmp_path / "ab-was-run"
    fake_ab = tmp_path / "ab"
    fake_ab.write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    fake_ab.chmod(0o755)
    monkeypatch.setenv("IOBENCH_AB", str(fake_ab))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bad input must be refused before the harness starts anything")

    monkeypatch.setattr("loadtests.cli.Harness", refuse)
    monkeypatch.setattr("loadtests.server.ServiceProcess.start", refuse)
    monkeypatch.setattr("app.prepare.locate", refuse)
    return mark


def assert_one_line_error(args: list[str], *expected: str, code: int = EXIT_USAGE) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


BAD_INPUT: dict[str, tuple[list[str], *tuple[str, ...]]] = {
    "unknown scenario": (["--scenario", "wait/sync/tim"], "unknown scenario wait/sync/tim", "did you mean wait/sync/time"),
    "unknown workload": (["--workload", "sleep"], "unknown workload sleep", "pg_sleep"),
    "unknown style": (["--style", "blocking"], "unknown style blocking", "async-blocking"),
    "unknown driver": (["--driver", "psycopg"], "unknown driver psycopg", "psycopg3-sync"),
    "unknown profile": (["--profile", "fast"], "unknown profile 'fast'", "quick"),
    "concurrency 0": (["-c", "0"], "--concurrency must be >= 1, got 0"),
    "negative concurrency": (["--concurrency", "-4"], "--concurrency must be >= 1, got -4"),
    "requests < concurrency": (["--profile", "article", "-n", "3", "-c", "8"],
                               "--requests (3) must be at least --concurrency (8)"),
    "too small a window": (["-n", "3"], "--requests (3) must be at least 5: a steady window needs"),
    "negative seconds": (["--seconds", "-1"], "--seconds must be between 0 and 60"),
    "garbage sweep levels": (["--sweep", "--sweep-levels", "1,lots"], "--sweep-levels takes comma-separated integers"),
    "zero sweep level": (["--sweep", "--sweep-levels", "0,8"], "--sweep-levels must be integers >= 1"),
    "non-local target": (["--target", "http://example.com"], "refusing host 'example.com'"),
    "missing compare folder": (["--compare", "no/such/run"], "--compare: no run folder"),
    "garbage generators": (["--generators", "lots"], "--generators takes a count or auto, got 'lots'"),
    "zero generators": (["--generators", "0"], "--generators takes 1 to 64 processes, got 0"),
    "unknown engine": (["--engine", "gatling"], "unknown --engine 'gatling'; choose from ab, locust"),
    "workers without locust": (["--processes", "2"], "--processes and --expect-workers drive Locust's workers"),
    "locust without workers": (["--engine", "locust"], "--engine locust needs exactly one of --processes N"),
    "locust with both": (["--engine", "locust", "--processes", "2", "--expect-workers", "2"], "needs exactly one of"),
    "locust with generators": (["--engine", "locust", "--processes", "2", "--generators", "2"],
                               "with --engine locust use --processes or --expect-workers"),
    "generators on the article": (["--profile", "article", "--generators", "2"], "runs ab start to end"),
    "more generators than clients": (["-c", "2", "--generators", "3"], "3 load generators need at least as many clients"),
}


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2_before_any_load(name: str, no_load: Path, tmp_path: Path) -> None:
    args, *expected = BAD_INPUT[name]
    assert_one_line_error([*args, "--out", str(tmp_path / "run")], *expected)
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    assert not no_load.exists(), "ab ran"


def test_an_unreachable_target_is_one_line_and_exit_2(no_load: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(["--target", url, "--out", str(tmp_path / "run")], f"no iobench service answers at {url}")
    assert not (tmp_path / "run").exists() and not no_load.exists()


def test_an_out_folder_holding_a_run_is_refused_untouched(no_load: Path, tmp_path: Path) -> None:
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "results.jsonl").write_text('{"case": "wait/sync/time"}\n')
    assert_one_line_error(["--out", str(out)], f"--out {out} already holds a run")
    assert sorted(path.name for path in out.iterdir()) == ["results.jsonl"]
    assert (out / "results.jsonl").read_text() == '{"case": "wait/sync/time"}\n'
    assert not no_load.exists()


def test_messages_with_brackets_are_printed_literally(no_load: Path, tmp_path: Path) -> None:
    """Rich markup in a message (a case key like file/sync/open[small.bin], a path) must not vanish."""
    assert_one_line_error(["--compare", "runs/[bold]x"], "--compare: no run folder at runs/[bold]x")


@pytest.mark.postgres
def test_a_log_tail_that_looks_like_markup_still_gets_its_report(
    live_server: ServiceProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error of a failed run carries the server log's tail; Rich must print it, not parse it
    (``[/srv/app]`` is a closing tag to Rich, which raised before the report was written)."""
    error = "the service stopped answering during wait/sync/time; its log ends:\nERROR [/srv/app] [bold]boom"

    class DyingHarness:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def run(self) -> None:
            raise ServiceDied(error)

    monkeypatch.setattr("loadtests.cli.Harness", DyingHarness)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--target", live_server.url, *HARNESS[3:], "--out", str(out)])
    assert result.exit_code == EXIT_ENVIRONMENT, (result.output, result.exception)
    assert "ERROR [/srv/app] [bold]boom" in result.output
    meta, records = read_run(out)
    assert (meta["status"], meta["error"], records) == ("failed", error, [])
    assert "partial run: 0 of 3 planned measurements (status: failed)" in (out / "report.md").read_text()


@pytest.mark.parametrize("how", ["IOBENCH_AB names nothing", "no ab on PATH"])
def test_missing_ab_prints_the_install_hint_and_exits_3(how: str, no_load: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "IOBENCH_AB names nothing":
        monkeypatch.setenv("IOBENCH_AB", str(tmp_path / "no-such-ab"))
    else:
        monkeypatch.delenv("IOBENCH_AB")
        monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    line = assert_one_line_error(["--profile", "quick", "--out", str(tmp_path / "run")], "ApacheBench (ab) not found",
                                 "apache2-utils", code=EXIT_ENVIRONMENT)
    assert ("IOBENCH_AB=" in line) == (how == "IOBENCH_AB names nothing")
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


# --- safety defaults ----------------------------------------------------------------------------


def test_the_service_binds_loopback_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("IOBENCH_HOST", raising=False)
    assert Settings().host == "127.0.0.1"

    from app import cli as service_cli

    bound: dict[str, Any] = {}

    class Database:
        url = "postgresql://postgres@127.0.0.1:5432/iobench"

        def describe(self) -> str:
            return "a stand-in"

        def close(self) -> None:
            pass

    monkeypatch.setattr("db.bootstrap.locate", lambda settings: Database())
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: bound.update(kwargs))
    result = CliRunner().invoke(service_cli.cli, ["serve", "--skip-prepare"])
    assert result.exit_code == 0, result.output
    assert bound["host"] == "127.0.0.1"
    assert "127.0.0.1" in CliRunner().invoke(service_cli.cli, ["serve", "--help"]).output


def test_the_docs_say_what_a_user_sees_when_things_fail() -> None:
    text = FAILURES_PAGE.read_text()
    assert text.startswith("# Failure behaviour\n")
    for words in ("422", "404", "503", "database_unavailable", "pool_timeout", "statement_timeout",
                  "apache2-utils", "exit 2", "130", "partial"):
        assert words in text, words


NEEDS_A_SERVICE = "--db-rtt, --rtt-levels, --pgbouncer and --worker-levels (or a profile that uses them) need a service"


@pytest.mark.parametrize("args, expected", [
    (["--db-rtt", "-1"], "--db-rtt takes milliseconds from 0 to 100, got '-1'"),
    (["--db-rtt", "abc"], "--db-rtt takes milliseconds from 0 to 100, got 'abc'"),
    (["--db-rtt", "101"], "--db-rtt takes milliseconds from 0 to 100, got '101'"),
    (["--rtt-levels", "0,1,x"], "--rtt-levels takes milliseconds from 0 to 100, got 'x'"),
    (["--rtt-levels", "1", "--workload", "wait"], "--rtt-levels measures lookup, report and write"),
    (["--db-rtt", "1", "--target", "http://127.0.0.1:9"], NEEDS_A_SERVICE),
    (["--pgbouncer", "--target", "http://127.0.0.1:9"], NEEDS_A_SERVICE),
    (["--pgbouncer", "--workload", "wait"], "--pgbouncer and --worker-levels measure the Postgres cases; none is selected"),
    (["--worker-levels", "1,x"], "--worker-levels takes comma-separated integers, got '1,x'"),
    (["--worker-levels", "0,2"], "--worker-levels takes worker counts from 1 to 16, got '0,2'"),
    (["--profile", "production", "--target", "http://127.0.0.1:9"], "(or a profile that uses them) need a service started here"),
])
def test_bad_rtt_is_one_line_and_exit_2_before_anything_starts(args: list[str], expected: str, no_load: Path,
                                                                tmp_path: Path) -> None:
    assert_one_line_error([*args, "--out", str(tmp_path / "run")], expected)
    assert not (tmp_path / "run").exists() and not no_load.exists()


def test_missing_pgbouncer_prints_its_install_hint_and_exits_3(no_load: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOBENCH_PGBOUNCER", str(tmp_path / "no-such-pgbouncer"))
    assert_one_line_error(["--pgbouncer", "--out", str(tmp_path / "run")], "apt-get install -y pgbouncer", code=EXIT_ENVIRONMENT)
    assert not (tmp_path / "run").exists()


@pytest.mark.postgres
def test_a_pool_budget_over_max_connections_is_refused_before_any_load(
    harness_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in harness_env.items():
        monkeypatch.setenv(key, value)
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an over-budget run must be refused before the harness starts anything")

    monkeypatch.setattr("loadtests.cli.Harness", refuse)
    line = assert_one_line_error(["--profile", "quick", "--pool-max", "400", "--out", str(tmp_path / "run")],
                                 "connection budget", "does not fit", "max_connections")
    assert "opens at most" in line
    assert not (tmp_path / "run").exists()
