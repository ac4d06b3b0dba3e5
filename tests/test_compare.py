"""Two runs side by side (loadtests.compare and `iobench-load compare`): intervals, successful responses, verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Unpack

from synthetic import RecordOptions, make_record, make_records, make_run, write_folder
from typer.testing import CliRunner

from loadtests.cli import cli
from loadtests.compare import compare_runs
from loadtests.results import Record


def scaled(records: list[Record], case: str, factor: float, **fields: Unpack[RecordOptions]) -> list[Record]:
    """``records`` with ``case``'s rounds rebuilt at ``factor`` times the throughput."""
    out = []
    for record in records:
        if record["case"] == case and not record.get("sweep") and not record.get("for_finding"):
            record = make_record(case, round=record["round"], eff=(record["efficiency"] or 0.9) * factor, **fields)
        out.append(record)
    return out


def test_a_real_slowdown_is_a_regression() -> None:
    old = make_records()
    new = scaled(old, "wait/async/asyncio", 0.5)
    result = compare_runs(new, old, old_run=make_run(old), new_run=make_run(new))
    row = next(r for r in result.rows if r.case == "wait/async/asyncio")
    assert row.regression and row.change_pct is not None and row.change_pct < -40
    assert result.has_regressions
    assert [c.id for c in result.finding_regressions] == ["F2-wait"]


def test_the_same_run_is_quiet() -> None:
    records = make_records()
    result = compare_runs(records, records)
    assert not result.has_regressions and not result.verdict_changes
    assert {row.status for row in result.rows} == {"same"}


def test_fast_errors_are_never_an_improvement() -> None:
    # The sync route degrades into quick 503s: ab's raw rps goes up, successful responses go down.
    old = make_records()
    new = scaled(old, "wait/sync/time", 0.5, non_2xx=40)
    for record in new:
        if record["case"] == "wait/sync/time" and (ab := record["ab"]):
            ab["requests_per_second"] *= 4
    row = next(r for r in compare_runs(new, old).rows if r.case == "wait/sync/time")
    assert row.status == "regression" and "over 1% errors" in row.note


def test_a_change_inside_the_noise_is_not_a_regression() -> None:
    old = make_records()
    noisy = [make_record("lookup/sync/psycopg2", round=r, eff=0.1 * n) for r, n in enumerate((1.0, 0.5, 1.6))]
    old = [r for r in old if r["case"] != "lookup/sync/psycopg2" or r.get("sweep")] + noisy
    new = scaled(old, "lookup/sync/psycopg2", 0.8)
    row = next(r for r in compare_runs(new, old).rows if r.case == "lookup/sync/psycopg2")
    assert row.status == "same" and "noise" in row.note


def test_compare_command_works_on_existing_folders(tmp_path: Path) -> None:
    old = make_records()
    write_folder(tmp_path / "old", old, make_run(old))
    new = scaled(old, "wait/async/asyncio", 0.5)
    write_folder(tmp_path / "new", new, make_run(new))
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "old"), str(tmp_path / "new")])
    assert result.exit_code == 1, result.output
    assert "regression" in result.output and "F2-wait" in result.output
    same = CliRunner().invoke(cli, ["compare", str(tmp_path / "old"), str(tmp_path / "old")])
    assert same.exit_code == 0, same.output
    missing = CliRunner().invoke(cli, ["compare", str(tmp_path / "old"), str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and missing.output.startswith("error: ")
