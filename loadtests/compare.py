"""Two runs side by side: which cases got slower, and which findings changed their verdict.

Main (non-sweep) measurements are matched by case key, the last measurement of a case
winning as in the findings. A case regresses when its throughput drops by more than the
tolerance (or it stops producing a result), and a finding regresses when it goes from pass
to fail. Comparing runs of different profiles is allowed, but a row whose concurrency
differs says so: its throughput is not comparable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loadtests.findings import FINDINGS, Finding, Status, evaluate_all
from loadtests.results import RESULTS, is_main, read_run

RowStatus = Literal["regression", "improvement", "same", "new", "gone"]


@dataclass(frozen=True)
class CaseChange:
    """One case in both runs (or in only one of them)."""

    case: str
    old_rps: float | None
    new_rps: float | None
    change_pct: float | None
    status: RowStatus
    old_concurrency: int | None = None
    new_concurrency: int | None = None
    note: str = ""

    @property
    def regression(self) -> bool:
        return self.status == "regression"


@dataclass(frozen=True)
class VerdictChange:
    """A finding whose status differs between the runs."""

    id: str
    title: str
    required: bool
    old: Status
    new: Status

    @property
    def regression(self) -> bool:
        return self.old == "pass" and self.new == "fail"

    @property
    def improvement(self) -> bool:
        return self.old == "fail" and self.new == "pass"


@dataclass
class ComparisonResult:
    rows: list[CaseChange]
    verdict_changes: list[VerdictChange]
    tolerance: float
    old_label: str = "old run"
    new_label: str = "this run"
    verdicts_unchanged: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[CaseChange]:
        return [row for row in self.rows if row.regression]

    @property
    def finding_regressions(self) -> list[VerdictChange]:
        return [change for change in self.verdict_changes if change.regression]

    @property
    def has_regressions(self) -> bool:
        return bool(self.regressions or self.finding_regressions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old_label, "new": self.new_label, "tolerance": self.tolerance,
            "rows": [row.__dict__ for row in self.rows],
            "verdict_changes": [{**change.__dict__, "regression": change.regression} for change in self.verdict_changes],
        }


def _main(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["case"]: record for record in records if is_main(record)}


def _rps(record: dict[str, Any] | None) -> float | None:
    if record is None or record.get("error"):
        return None
    value = (record.get("ab") or {}).get("requests_per_second")
    return value if value else None


def _row(case: str, old: dict[str, Any] | None, new: dict[str, Any] | None, tolerance: float) -> CaseChange:
    old_rps, new_rps = _rps(old), _rps(new)
    old_c = old.get("concurrency") if old else None
    new_c = new.get("concurrency") if new else None
    note = f"c {old_c} -> {new_c}: not comparable" if old and new and old_c != new_c else ""
    change = (new_rps - old_rps) / old_rps * 100 if old_rps and new_rps else None
    status: RowStatus
    if old is None:
        status = "new"
    elif new is None:
        status = "gone"
    elif old_rps is None and new_rps is None:
        status, note = "same", note or "no result in either run"
    elif new_rps is None:
        status, note = "regression", note or f"no result now: {new.get('error') or 'no throughput'}"
    elif old_rps is None:
        status, note = "improvement", note or "had no result before"
    elif change is not None and change < -tolerance * 100:
        status = "regression"
    elif change is not None and change > tolerance * 100:
        status = "improvement"
    else:
        status = "same"
    return CaseChange(case, old_rps, new_rps, change, status, old_c, new_c, note)


def compare_runs(
    new_records: list[dict[str, Any]],
    old_records: list[dict[str, Any]],
    tolerance: float = 0.15,
    *,
    old_label: str = "old run",
    new_label: str = "this run",
    findings: tuple[Finding, ...] = FINDINGS,
) -> ComparisonResult:
    """Match main measurements by case key and compare throughput and finding verdicts."""
    old, new = _main(old_records), _main(new_records)
    cases = list(new) + [case for case in old if case not in new]
    rows = [_row(case, old.get(case), new.get(case), tolerance) for case in cases]
    changes, unchanged = [], []
    for before, after in zip(evaluate_all(old_records, findings), evaluate_all(new_records, findings), strict=True):
        if before.status != after.status:
            changes.append(VerdictChange(after.finding.id, after.finding.title, after.finding.required, before.status, after.status))
        else:
            unchanged.append(after.finding.id)
    return ComparisonResult(rows, changes, tolerance, old_label, new_label, unchanged)


def load_run(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """run.json and the records of a run folder, or of its results.jsonl given directly."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    results = path / RESULTS if path.is_dir() else path
    if not results.is_file():
        raise FileNotFoundError(f"no {RESULTS} at {path}: not a run folder")
    run, records = read_run(folder)
    if results.name != RESULTS:
        # Another JSON-lines file (a renamed copy): read it the way read_run reads results.jsonl.
        records = [record for line in results.read_text().splitlines() if (record := _parse(line)) is not None]
    return run, records


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
