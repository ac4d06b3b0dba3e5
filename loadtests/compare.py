"""Two runs side by side: which paired ratios moved, which findings changed their verdict, which cases broke.

Absolute throughput across two runs measures the machine's drift (steal from other guests moves
a rate by a third within minutes) as much as the code, so it decides nothing here. What carries
from one run to the next is a ratio measured side by side within each run (``pairing.compare``):
the findings' ratios and the run's other pairs (each driver over the reference, FastAPI's share,
the RTT pairs; ``plan.comparisons``). A ratio "moved" when it changed by more than the tolerance
*and* the two runs' 95% intervals do not overlap (criterion's rule: a change must be both real
and larger than the noise band); which side of the pair moved, a ratio cannot say.

Regressions, which set the exit code: a finding that goes from pass to fail, and a case that
stopped producing successful responses or now fails more than 1% of them. Absolute rates are
still listed, with their change, as each run's state at its time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loadtests.findings import Finding, Status, evaluate_all, finding_pairs, findings_of
from loadtests.legacy import upgrade
from loadtests.pairing import compare
from loadtests.plan import comparisons
from loadtests.results import RESULTS, Record, is_main, read_run, successful_rps
from loadtests.stats import Interval
from loadtests.summary import CaseSummary, main_cases

RowStatus = Literal["regression", "improvement", "same", "new", "gone"]
RatioStatus = Literal["higher", "lower", "same", "new", "gone"]


@dataclass(frozen=True)
class CaseChange:
    """One case in both runs (or in only one of them): its absolute rate, each run's state at its time."""

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
class RatioChange:
    """One paired ratio (numerator over denominator, side by side in each run) in both runs."""

    numerator: str
    denominator: str
    why: str
    old: Interval | None
    new: Interval | None
    change_pct: float | None
    status: RatioStatus

    @property
    def moved(self) -> bool:
        return self.status in ("higher", "lower")


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
    ratios: list[RatioChange] = field(default_factory=list)

    @property
    def regressions(self) -> list[CaseChange]:
        return [row for row in self.rows if row.regression]

    @property
    def finding_regressions(self) -> list[VerdictChange]:
        return [change for change in self.verdict_changes if change.regression]

    @property
    def moved(self) -> list[RatioChange]:
        return [ratio for ratio in self.ratios if ratio.moved]

    @property
    def has_regressions(self) -> bool:
        return bool(self.regressions or self.finding_regressions)


def _apart(old: Interval | None, new: Interval | None) -> bool:
    return bool(old and new and old.bounded and new.bounded and (new.high < old.low or new.low > old.high))


def _change(old: Interval | None, new: Interval | None) -> float | None:
    return (new.center / old.center - 1) * 100 if old and new else None


def _row(case: str, old: CaseSummary | None, new: CaseSummary | None, tolerance: float) -> CaseChange:
    old_rps, new_rps = (old.rps if old else None), (new.rps if new else None)
    old_c, new_c = (old.concurrency if old else None), (new.concurrency if new else None)
    note = f"c {old_c} -> {new_c}: not comparable" if old and new and old_c != new_c else ""
    change = _change(old_rps, new_rps)
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
    else:
        status = "same"
        if change is not None and abs(change) > tolerance * 100:
            apart = "the intervals apart" if _apart(old_rps, new_rps) else "within the noise: the intervals overlap"
            note = note or f"{'faster' if change > 0 else 'slower'}, {apart}; absolute rates of two runs " \
                           "differ with the machine's state as much as with the code: see the paired ratios"
    if new is not None and new.too_many_errors:
        status = "regression" if old is None or not old.too_many_errors else status
        note = (note + "; " if note else "") + f"over 1% errors now ({new.worst_error_share:.1%})"
    return CaseChange(case, old_rps, new_rps, change, status, old_c, new_c, note)


def _ratio(numerator: str, denominator: str, why: str, old: Interval | None, new: Interval | None,
           tolerance: float) -> RatioChange:
    change = _change(old, new)
    status: RatioStatus
    if old is None:
        status = "new"
    elif new is None:
        status = "gone"
    elif change is not None and abs(math.log1p(change / 100)) > math.log1p(tolerance) and _apart(old, new):
        status = "higher" if change > 0 else "lower"
    else:
        status = "same"
    return RatioChange(numerator, denominator, why, old, new, change, status)


def _pairs(findings: tuple[Finding, ...]) -> list[tuple[str, str, str]]:
    """The run's paired comparisons other than the findings' (which come with their verdicts)."""
    judged = {(f.numerator, f.denominator) for f in findings}
    pairs = comparisons(finding_pairs(findings))
    return [(p.numerator, p.denominator, p.why) for p in pairs
            if p.concurrency is None and (p.numerator, p.denominator) not in judged]


def compare_runs(
    new_records: list[Record],
    old_records: list[Record],
    tolerance: float = 0.15,
    *,
    old_run: dict[str, Any] | None = None,
    new_run: dict[str, Any] | None = None,
    old_label: str = "old run",
    new_label: str = "this run",
    findings: tuple[Finding, ...] | None = None,
) -> ComparisonResult:
    """The findings' ratios and verdicts, the other paired ratios, and each case's absolute rate, run against run."""
    new_records, old_records = upgrade(new_records), upgrade(old_records)
    old = {summary.case: summary for summary in main_cases(old_records)}
    new = {summary.case: summary for summary in main_cases(new_records)}
    cases = list(new) + [case for case in old if case not in new]
    rows = [_row(case, old.get(case), new.get(case), tolerance) for case in cases]
    changes, unchanged, ratios = [], [], []
    findings = findings_of(new_run or {}) if findings is None else findings  # a check's run judges its own claims
    before_all = evaluate_all(old_records, old_run or {}, findings)
    after_all = evaluate_all(new_records, new_run or {}, findings)
    for before, after in zip(before_all, after_all, strict=True):
        if (before.ratio or after.ratio) and after.finding.denominator is not None:
            ratios.append(_ratio(after.finding.numerator, after.finding.denominator, after.finding.id, before.ratio,
                                 after.ratio, tolerance))
        if before.status != after.status:
            changes.append(VerdictChange(after.finding.id, after.finding.title, after.finding.required, before.status, after.status))
        else:
            unchanged.append(after.finding.id)
    old_main = [r for r in old_records if is_main(r)]
    new_main = [r for r in new_records if is_main(r)]
    for numerator, denominator, why in _pairs(findings):
        was = compare(old_main, numerator, denominator, successful_rps)
        now = compare(new_main, numerator, denominator, successful_rps)
        if was or now:
            ratios.append(_ratio(numerator, denominator, why, was.interval if was else None,
                                 now.interval if now else None, tolerance))
    return ComparisonResult(rows, changes, tolerance, old_label, new_label, unchanged, ratios)


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
