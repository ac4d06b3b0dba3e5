"""`iobench-load stability`: how often a verdict changes across repeated runs of one setup."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from synthetic import make_record, make_records, make_run, write_folder
from typer.testing import CliRunner

from loadtests.cli import cli
from loadtests.results import RESULTS_PACKED, RUN, read_run
from loadtests.stability import Flips, Series, series


def runs(tmp_path: Path, broken: int | None = None) -> list[Path]:
    """Three synthetic runs that exited 0; run ``broken`` has F2-wait failing (and exit code 1)."""
    folders = []
    for number in range(3):
        records = make_records()
        if number == broken:
            records = [make_record("wait/async/asyncio", round=r["round"], eff=0.4) if r["case"] == "wait/async/asyncio"
                       and not r.get("sweep") else r for r in records]
        run = make_run(records, exit_code=1 if number == broken else 0)
        folders.append(write_folder(tmp_path / f"run-{number}", records, run))
    return folders


def test_identical_runs_change_nothing(tmp_path: Path) -> None:
    [group] = series(runs(tmp_path))
    assert group.profile == "default" and group.exit_codes == (0, 0, 0) and group.required_changes == 0
    result = CliRunner().invoke(cli, ["stability", *map(str, runs(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "0 change(s) of a required verdict" in result.output


def test_a_flipped_verdict_is_counted_and_fails(tmp_path: Path) -> None:
    folders = runs(tmp_path, broken=1)
    [group] = series(folders)
    flips = {f.id: f for f in group.flips}
    assert flips["F2-wait"].labels == ("PASS", "FAIL", "PASS") and flips["F2-wait"].changes == 2
    low, high = flips["F2-wait"].ratio_range or (0.0, 0.0)
    assert low < 1.58 < high  # how far the same paired ratio moved from run to run
    assert group.required_changes == 2
    result = CliRunner().invoke(cli, ["stability", *map(str, folders)])
    assert result.exit_code == 1 and "F2-wait" in result.output


def test_runs_are_grouped_by_profile(tmp_path: Path) -> None:
    folders = runs(tmp_path)
    quick = json.loads((folders[0] / RUN).read_text())
    quick["profile"]["name"] = "quick"
    (folders[0] / RUN).write_text(json.dumps(quick))
    assert [(g.profile, len(g.folders)) for g in series(folders)] == [("quick", 1), ("default", 2)]


def test_a_folder_kept_for_its_verdicts_alone_still_counts(tmp_path: Path) -> None:
    """results/stability/ keeps only run.json (its verdicts and exit code), not every results.jsonl."""
    from loadtests.cli import verdict_code
    from loadtests.findings import evaluate_all

    folders = runs(tmp_path, broken=1)
    for folder in folders:
        run = json.loads((folder / RUN).read_text())
        records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
        verdicts = evaluate_all(records, run)
        run.update(verdicts=[v.to_dict() for v in verdicts], exit_code=verdict_code(verdicts))
        (folder / RUN).write_text(json.dumps(run))
        (folder / "results.jsonl").unlink()
    [group] = series(folders)
    assert dict((f.id, f.changes) for f in group.flips)["F2-wait"] == 2


def test_the_driver_table_is_lined_up_run_by_run(tmp_path: Path) -> None:
    folders = runs(tmp_path)
    [group] = series(folders)
    assert group.drivers is not None
    rows = {(row.workload, row.driver): row for row in group.drivers.rows}
    asyncpg = rows[("lookup", "asyncpg")]
    assert [i.center if i else None for i in asyncpg.intervals] == pytest.approx([2.0, 2.0, 2.0])
    assert not asyncpg.apart and group.drivers.apart == 0
    assert group.drivers.within() == (len(rows),) * 3  # synthetic rounds agree exactly: every row is narrow
    assert group.drivers.fastest["lookup"] == ("lookup/async/asyncpg",) * 3
    result = CliRunner().invoke(cli, ["stability", *map(str, folders)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "driver table" in result.output and f"rows within ±10%: {len(rows)} of {len(rows)}" in result.output


def test_a_row_measured_apart_is_named(tmp_path: Path) -> None:
    folders = runs(tmp_path)
    records = [json.loads(line) for line in (folders[1] / "results.jsonl").read_text().splitlines()]
    for record in records:  # the second run's asyncpg lookups at half the rate: the same row, far apart
        if record["case"] == "lookup/async/asyncpg" and record.get("steady"):
            record["steady"]["rps"] /= 2
    write_folder(folders[1], records, json.loads((folders[1] / RUN).read_text()))
    [group] = series(folders)
    assert group.drivers is not None
    apart = [(row.workload, row.driver) for row in group.drivers.rows if row.apart]
    assert apart == [("lookup", "asyncpg")]


def test_a_packed_folder_keeps_its_records(tmp_path: Path) -> None:
    """results/drivers-stability/ keeps each run's records as results.jsonl.gz."""
    folders = runs(tmp_path)
    packed = folders[0] / "results.jsonl"
    (folders[0] / RESULTS_PACKED).write_bytes(gzip.compress(packed.read_bytes()))
    packed.unlink()
    [group] = series(folders)
    assert group.drivers is not None and all(row.intervals[0] is not None for row in group.drivers.rows)
    assert read_run(folders[0])[1] == read_run(folders[1])[1]


def test_exit_4_is_expected_only_of_a_run_that_measured_no_required_finding() -> None:
    required = Flips("F1-wait", True, ("NOT MEASURED", "PASS"), ("not measured", "pass"))
    group = Series("drivers", (Path("a"), Path("b")), (4, 4), (required,))
    assert group.unexpected_exits == (1,)  # the first run judged no required finding; the second did, and passed
