"""How often a verdict changes when nothing changed: findings across repeated runs of one setup."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loadtests.findings import Verdict, evaluate_all
from loadtests.results import read_run


@dataclass(frozen=True)
class Flips:
    """One finding's verdicts over a series of runs, in order."""

    id: str
    required: bool
    labels: tuple[str, ...]  # as the report shows them: "PASS, UNEXPLAINED" included
    statuses: tuple[str, ...]  # the verdicts proper: pass, fail, inconclusive, ...

    @property
    def changes(self) -> int:
        """Consecutive runs whose verdicts differ (an unexplained pass is still a pass)."""
        return sum(a != b for a, b in zip(self.statuses, self.statuses[1:], strict=False))


@dataclass(frozen=True)
class Series:
    """Runs of one profile, their exit codes, and every finding's verdicts across them."""

    profile: str
    folders: tuple[Path, ...]
    exit_codes: tuple[int | None, ...]
    flips: tuple[Flips, ...]

    @property
    def required_changes(self) -> int:
        return sum(f.changes for f in self.flips if f.required)


def series(folders: list[Path]) -> list[Series]:
    """Group run folders by profile (in the given order) and line up their verdicts."""
    by_profile: dict[str, list[tuple[Path, dict[str, object], list[Verdict]]]] = {}
    for folder in folders:
        run, records = read_run(folder)
        name = str((run.get("profile") or {}).get("name") or "?")
        by_profile.setdefault(name, []).append((folder, run, evaluate_all(records, run)))
    result = []
    for name, runs in by_profile.items():
        ids = [v.finding for v in runs[0][2]]
        flips = []
        for finding in ids:
            found = [next(v for v in verdicts if v.finding.id == finding.id) for _, _, verdicts in runs]
            flips.append(Flips(finding.id, finding.required, tuple(v.label for v in found), tuple(v.status for v in found)))
        codes = tuple(code if isinstance(code := run.get("exit_code"), int) else None for _, run, _ in runs)
        result.append(Series(name, tuple(folder for folder, _, _ in runs), codes, tuple(flips)))
    return result
