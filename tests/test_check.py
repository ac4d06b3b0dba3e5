"""iobench-load check: bad claims files refused by file, claim and field with nothing started; the plan of a check;
its JUnit XML as a JUnit reader sees it; its Markdown summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from synthetic import make_record, make_run, write_folder
from typer.testing import CliRunner

from loadtests import check
from loadtests.claims import load
from loadtests.cli import cli
from loadtests.errors import EXIT_USAGE
from loadtests.findings import Bar, Status, Verdict, evaluate, evaluate_all
from loadtests.profiles import PROFILES
from loadtests.results import REPORT, read_run
from loadtests.stats import Interval

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BAD = FIXTURES / "claims-bad"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "claims"

#: Each malformed file in tests/fixtures/claims-bad: the claim and the field its error names, and words it says.
REFUSED: dict[str, tuple[str | None, str | None, str]] = {
    "unknown-scenario.toml": ("lookups-async", "scenario", "unknown scenario 'lookup/async/asyncpgg'"),
    "unknown-baseline.toml": ("lookups-async", "baseline", "unknown scenario 'lookup/sync/nope'"),
    "file-scenario-without-its-file.toml": ("lookups-async", "scenario", "file/async/aiofiles[large.bin]"),
    "ratio-across-workloads.toml": ("lookups-async", "baseline", "one workload"),
    "unknown-metric.toml": ("lookups-async", "metric", "unknown metric 'rpm'"),
    "unknown-field.toml": ("lookups-async", "treshold", "unknown field"),
    "unknown-setup-key.toml": ("lookups-async", "setup.pool_size", "unknown setup key"),
    "threshold-of-the-wrong-type.toml": ("lookups-async", "threshold", "a number or \"model\", got '1.2'"),
    "model-threshold-on-a-bound.toml": ("lookups-async", "threshold", "needs a ratio of two cases"),
    "concurrency-beyond-ab.toml": ("lookups-async", "setup.concurrency", "less than or equal to 20000"),
    "rtt-beyond-the-proxy.toml": ("lookups-async", "setup.db_rtt_ms", "from 0 to 100"),
    "rtt-largest-in-a-check.toml": ("lookups-async", "setup.db_rtt_ms", "give milliseconds"),
    "required-not-a-boolean.toml": ("lookups-async", "required", "valid boolean"),
    "missing-op.toml": ("lookups-async", "op", "Field required"),
    "duplicate-id.toml": ("lookups-async", "id", "duplicate id"),
    "malformed-toml.toml": (None, None, "not valid TOML"),
}


def run_check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", *args])
    return result.exit_code, " ".join(result.output.split())  # Rich may wrap a long line


def test_every_malformed_file_has_its_expectation() -> None:
    assert sorted(REFUSED) == sorted(p.name for p in BAD.glob("*.toml") if p.name != "pools-beyond-max-connections.toml")
    assert len(REFUSED) >= 12


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_bad_claims_file_exits_2_naming_file_claim_and_field_and_starts_nothing(name: str, tmp_path: Path) -> None:
    claim, field, words = REFUSED[name]
    out = tmp_path / "check"
    earlier = _children()  # other tests' servers (session fixtures) are not this check's
    code, output = run_check(str(BAD / name), "--out", str(out))
    assert code == EXIT_USAGE, output
    assert output.startswith("error: ") and str(BAD / name) in output and words in output, output
    if claim:
        assert f"claim {claim}: {field}:" in output, output
    else:
        assert "line" in output, "a TOML error says where"
    assert not out.exists(), "no run folder"
    assert _children() - earlier == set(), "no server, proxy or ab started"


@pytest.mark.postgres
def test_pools_beyond_the_servers_max_connections_exit_2_before_anything_starts(
        empty_database_factory: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database_factory())
    out = tmp_path / "check"
    path = BAD / "pools-beyond-max-connections.toml"
    earlier = _children()
    code, output = run_check(str(path), "--out", str(out))
    assert code == EXIT_USAGE, output
    assert f"{path}: claim lookups-async: setup.pool_max: connection budget" in output and "does not fit" in output, output
    assert not out.exists() and _children() - earlier == set()


def test_no_files_and_missing_files_are_refused(tmp_path: Path) -> None:
    assert run_check()[0] == EXIT_USAGE
    code, output = run_check(str(tmp_path / "nope.toml"))
    assert code == EXIT_USAGE and "no such claims file" in output


def test_the_examples_plan_one_server_per_setup_and_only_their_cases() -> None:
    claims = tuple(claim for _, claim in load(sorted(EXAMPLES.glob("*.toml"))))
    assert len(claims) >= 6 and all(claim.source for claim in claims)
    runs = check.plan(claims, PROFILES["quick"])
    setups = [run.setup for run in runs]
    assert len(setups) == len({setup.server() for setup in setups}), "one run per distinct setup"
    named = {key for claim in claims for key in claim.cases}
    for run in runs:
        for key in run.cases:
            # Only named cases, and the reference that pairs two named ones of different blocks.
            assert key in named or key.endswith("/sync/psycopg2"), key
    pool = next(run for run in runs if run.setup.pool_max == 10)
    assert (pool.profile.threadpool_tokens, pool.profile.pool_max, pool.profile.declared()["pool_max"]) == (40, 10, 10)
    far = next(run for run in runs if run.setup.db_rtt_ms == 5.0)
    assert {job.rtt_ms for job in far.jobs} == {5.0}
    bouncer = next(run for run in runs if run.setup.pgbouncer)
    assert {job.via for job in bouncer.jobs} == {"pgbouncer"}


def test_claims_at_their_own_concurrency_measure_only_there() -> None:
    claims = tuple(claim for _, claim in load([EXAMPLES / "files.toml"]))
    (run,) = check.plan(claims, PROFILES["quick"])
    assert {(job.case.key, job.concurrency) for job in run.jobs} == {
        ("file/async/aiofiles[large.bin]", 8), ("file/async-blocking/open[large.bin]", 8)}
    assert all(not block.alone for block in run.planned), "every case a claim judges is measured every round"


def _verdict(claim_id: str, status: Status, required: bool = True) -> tuple[str, Verdict]:
    claims = {claim.id: claim for _, claim in load(sorted(EXAMPLES.glob("*.toml")))}
    claim = claims[claim_id].model_copy(update={"required": required})
    ratio = Interval(1.3, 1.1, 1.5, 3)
    return "examples/claims/database.toml", Verdict(claim, status, ratio, ratio, Bar(1.0, None, "'faster' at all"),
                                                     None, None, None, None, 3, "because")


def test_junit_has_one_case_per_claim_as_a_junit_reader_sees_it(tmp_path: Path) -> None:
    verdicts = [_verdict("async-over-sync-1ms", "pass"), _verdict("async-over-sync-5ms", "fail"),
                _verdict("blocking-driver-collapses-5ms", "inconclusive"),
                _verdict("pgbouncer-asyncpg", "inconclusive", required=False),
                _verdict("pgbouncer-psycopg3", "not measured")]
    path = tmp_path / "junit.xml"
    path.write_text(check.junit(verdicts, 12.5))
    xml = JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 1, 2, 1)
    cases = {case.name.split(":")[0]: case for case in suite}
    assert list(cases) == [claim_id for claim_id in (v.finding.id for _, v in verdicts)]
    assert cases["async-over-sync-1ms"].is_passed
    (failure,) = cases["async-over-sync-5ms"].result
    assert isinstance(failure, Failure) and failure.message is not None
    assert "FAIL: ratio 1.3 [1.1, 1.5] (95%); threshold >= 1" in failure.message
    assert isinstance(cases["blocking-driver-collapses-5ms"].result[0], Error)
    assert isinstance(cases["pgbouncer-asyncpg"].result[0], Skipped)
    assert isinstance(cases["pgbouncer-psycopg3"].result[0], Error)


def test_the_summary_fits_a_ci_job_summary() -> None:
    verdicts = [_verdict("async-over-sync-1ms", "pass"), _verdict("async-over-sync-5ms", "fail")]
    claims = tuple(v.finding for _, v in verdicts)
    text = check.summary(verdicts, check.plan(claims, PROFILES["quick"]), 1, Path("runs/x-check"))
    assert text.startswith("### iobench claims: required claims failed: async-over-sync-5ms")
    assert "| async-over-sync-5ms: " in text and "**FAIL**" in text and len(text.splitlines()) < 20


def test_a_bound_is_judged_on_the_interval_of_the_cases_own_value() -> None:
    claims = {claim.id: claim for _, claim in load(sorted(EXAMPLES.glob("*.toml")))}
    lookups = [make_record("lookup/sync/psycopg2", round=r, noise=n) for r, n in enumerate((1.0, 0.97, 1.03))]
    trips = evaluate(claims["autocommit-one-round-trip-psycopg2"], lookups, None)
    assert trips.status == "pass" and trips.ratio is not None and trips.ratio.center == 2.0 and trips.threshold == 2.0
    errors = evaluate(claims["pgbouncer-asyncpg"], [make_record("lookup/async/asyncpg", round=r) for r in range(3)], None)
    assert errors.status == "pass" and errors.ratio is not None and errors.ratio.center == 0.0, errors.reason
    broken = [make_record("lookup/async/asyncpg", round=r) for r in range(3)]
    for record in broken:
        assert record["ab"] is not None
        record["ab"]["non_2xx"] = record["ab"]["complete"] // 10  # a tenth answered 503
    assert evaluate(claims["pgbouncer-asyncpg"], broken, None).status == "fail"
    files = [make_record("file/async/aiofiles[large.bin]", round=r, c=8, ping_p50=p, for_finding="x")
             for r, p in enumerate((10.0, 12.0, 11.0))]  # p99 is twice the median: about 22 ms, under 50
    assert evaluate(claims["aiofiles-keeps-ping-fast"], files, None).status == "pass"
    slow = [make_record("file/async/aiofiles[large.bin]", round=r, c=8, ping_p50=p, for_finding="x")
            for r, p in enumerate((10.0, 30.0, 20.0))]
    assert evaluate(claims["aiofiles-keeps-ping-fast"], slow, None).status == "inconclusive"
    assert evaluate(claims["aiofiles-keeps-ping-fast"], lookups, None).status == "not measured"


def test_report_judges_a_check_folder_by_the_claims_it_records(tmp_path: Path) -> None:
    claims = [claim for _, claim in load([EXAMPLES / "database.toml"]) if claim.id.startswith("autocommit")]
    records = [make_record(key, round=r) for r in range(3) for key in ("lookup/sync/psycopg2", "lookup/async/asyncpg")]
    folder = write_folder(tmp_path / "setup-1", records,
                          make_run(records, claims=[claim.model_dump(mode="json") for claim in claims]))
    result = CliRunner().invoke(cli, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert [v.finding.id for v in evaluate_all(*reversed(read_run(folder)))] == [claim.id for claim in claims]
    assert "autocommit-one-round-trip-asyncpg" in (folder / REPORT).read_text()
