"""Two runs side by side (loadtests.compare and `iobench-load compare`): paired ratios, verdicts, broken cases.

Absolute rates of two runs drift with the machine; what a comparison trusts is each run's paired ratios.
"""

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
            record = make_record(case, round=record["round"], eff=(record["efficiency"] or 0.9) * factor,
                                 position=record.get("position") or 0, **fields)
        out.append(record)
    return out


def test_a_ratio_that_moved_is_shown_and_a_finding_that_failed_is_a_regression() -> None:
    old = make_records()
    new = scaled(old, "wait/async/asyncio", 0.5)
    result = compare_runs(new, old, old_run=make_run(old), new_run=make_run(new))
    f2 = next(r for r in result.ratios if r.why == "F2-wait")
    assert f2.status == "lower" and f2.change_pct is not None and f2.change_pct < -40
    assert [c.id for c in result.finding_regressions] == ["F2-wait"] and result.has_regressions
    row = next(r for r in result.rows if r.case == "wait/async/asyncio")
    assert not row.regression and "machine's state" in row.note  # an absolute drop alone decides nothing


def test_the_whole_machine_slower_moves_no_ratio() -> None:
    """Every case at 0.7 of its rate (another guest took the host): absolute rates fall, paired ratios do not."""
    old = make_records()
    new = [make_record(r["case"], round=r["round"], c=r["concurrency"], eff=(r["efficiency"] or 0.9) * 0.7,
                       sweep=bool(r.get("sweep")), for_finding=r.get("for_finding"), position=r.get("position") or 0,
                       ping_p50=r["ping"]["p50_ms"] if r["ping"] else None)
           if not r.get("error") else r for r in old]
    result = compare_runs(new, old, old_run=make_run(old), new_run=make_run(new))
    assert result.ratios and not result.moved and not result.has_regressions
    assert any("slower" in row.note for row in result.rows)
    assert any(r.why == "driver table" for r in result.ratios) and any(r.why == "FastAPI's share" for r in result.ratios)


def test_the_same_run_is_quiet() -> None:
    records = make_records()
    result = compare_runs(records, records)
    assert not result.has_regressions and not result.verdict_changes and not result.moved
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


def test_a_change_inside_the_noise_has_not_moved() -> None:
    old = make_records()
    noisy = [make_record("lookup/async/asyncpg", round=r, eff=0.08 * n) for r, n in enumerate((1.0, 0.5, 1.6))]
    old = [r for r in old if r["case"] != "lookup/async/asyncpg" or r.get("sweep")] + noisy
    new = scaled(old, "lookup/async/asyncpg", 0.8)
    ratio = next(r for r in compare_runs(new, old).ratios if r.numerator == "lookup/async/asyncpg" and r.why == "N1-lookup")
    assert ratio.status == "same"


def test_compare_command_works_on_existing_folders(tmp_path: Path) -> None:
    old = make_records()
    write_folder(tmp_path / "old", old, make_run(old))
    new = scaled(old, "wait/async/asyncio", 0.5)
    write_folder(tmp_path / "new", new, make_run(new))
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "old"), str(tmp_path / "new")])
    assert result.exit_code == 1, result.output
    assert "F2-wait" in result.output and "regression" in result.output
    same = CliRunner().invoke(cli, ["compare", str(tmp_path / "old"), str(tmp_path / "old")])
    assert same.exit_code == 0, same.output
    missing = CliRunner().invoke(cli, ["compare", str(tmp_path / "old"), str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and missing.output.startswith("error: ")
