"""Two runs side by side: which cases got slower, and which findings changed their verdict.

Cases at the profile's concurrency are matched by case key. Throughput is successful
responses per second, summarised over each run's repetitions. A case regresses when its
throughput fell by more than the tolerance *and* the two runs' 95% intervals do not overlap
(criterion's rule: a change must be both real and larger than the noise band), or when it
stopped producing a result. A finding regresses when it goes from pass to fail. Runs of
different profiles can be compared, but a row whose concurrency differs says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loadtests.findings import FINDINGS, Finding, Status, evaluate_all
from loadtests.results import RESULTS, Record, read_run
from loadtests.stats import Interval
from loadtests.summary import CaseSummary, main_cases

RowStatus = Literal["regression", "improvement", "same", "new", "gone"]


@dataclass(frozen=True)
class CaseChange:
    """One case in both runs (or in only one of them)."""

    case: str
    old: Interval | None
    new: Interval | None
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


def _row(case: str, old: CaseSummary | None, new: CaseSummary | None, tolerance: float) -> CaseChange:
    old_rps, new_rps = (old.rps if old else None), (new.rps if new else None)
    old_c, new_c = (old.concurrency if old else None), (new.concurrency if new else None)
    note = f"c {old_c} -> {new_c}: not comparable" if old and new and old_c != new_c else ""
    change = (new_rps.center / old_rps.center - 1) * 100 if old_rps and new_rps else None
    apart = bool(old_rps and new_rps and (new_rps.high < old_rps.low or new_rps.low > old_rps.high))
    status: RowStatus
    if old is None:
        status = "new"
    elif new is None:
        status = "gone"
    elif old_rps is None and new_rps is None:
        status, note = "same", note or "no result in either run"
    elif new_rps is None:
        status, note = "regression", note or "no successful responses now: " + "; ".join(new.errors[:1])
    elif old_rps is None:
        status, note = "improvement", note or "had no result before"
    elif change is not None and change < -tolerance * 100 and apart:
        status = "regression"
    elif change is not None and change > tolerance * 100 and apart:
        status = "improvement"
    else:
        status = "same"
        if change is not None and abs(change) > tolerance * 100:
            note = note or "change within the noise: the intervals overlap"
    if new is not None and new.too_many_errors:
        note = (note + "; " if note else "") + f"over 1% errors now ({new.worst_error_share:.1%})"
    return CaseChange(case, old_rps, new_rps, change, status, old_c, new_c, note)


def compare_runs(
    new_records: list[Record],
    old_records: list[Record],
    tolerance: float = 0.15,
    *,
    old_run: dict[str, Any] | None = None,
    new_run: dict[str, Any] | None = None,
    old_label: str = "old run",
    new_label: str = "this run",
    findings: tuple[Finding, ...] = FINDINGS,
) -> ComparisonResult:
    """Match the cases at the profile's concurrency by key; compare throughput and finding verdicts."""
    old = {summary.case: summary for summary in main_cases(old_records)}
    new = {summary.case: summary for summary in main_cases(new_records)}
    cases = list(new) + [case for case in old if case not in new]
    rows = [_row(case, old.get(case), new.get(case), tolerance) for case in cases]
    changes, unchanged = [], []
    before_all = evaluate_all(old_records, old_run or {}, findings)
    after_all = evaluate_all(new_records, new_run or {}, findings)
    for before, after in zip(before_all, after_all, strict=True):
        if before.status != after.status:
            changes.append(VerdictChange(after.finding.id, after.finding.title, after.finding.required, before.status, after.status))
        else:
            unchanged.append(after.finding.id)
    return ComparisonResult(rows, changes, tolerance, old_label, new_label, unchanged)


def load_run(path: Path) -> tuple[dict[str, Any], list[Record]]:
    """run.json and the records of a run folder; FileNotFoundError when it is not one."""
    path = Path(path)
    if not (path / RESULTS).is_file():
        raise FileNotFoundError(f"no {RESULTS} in {path}: not a run folder")
    return read_run(path)


def compare_folders(old: Path, new: Path, tolerance: float = 0.15) -> ComparisonResult:
    old_run, old_records = load_run(old)
    new_run, new_records = load_run(new)
    return compare_runs(new_records, old_records, tolerance, old_run=old_run, new_run=new_run,
                        old_label=f"`{old}`", new_label=f"`{new}`")
