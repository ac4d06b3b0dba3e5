"""`iobench-load stability`: how often a verdict changes across repeated runs of one setup."""

from __future__ import annotations

import json
from pathlib import Path

from synthetic import make_record, make_records, make_run, write_folder
from typer.testing import CliRunner

from loadtests.cli import cli
from loadtests.results import RUN
from loadtests.stability import series


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
