"""How often a verdict changes when nothing changed: findings across repeated runs of one setup."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from loadtests.findings import Verdict, evaluate_all
from loadtests.results import read_run


@dataclass(frozen=True)
class Flips:
    """One finding's verdicts over a series of runs, in order."""

    id: str
    required: bool
    labels: tuple[str, ...]

    @property
    def changes(self) -> int:
        """Consecutive runs whose verdicts differ."""
        return sum(a != b for a, b in zip(self.labels, self.labels[1:], strict=False))

    @property
    def majority(self) -> str:
        return Counter(self.labels).most_common(1)[0][0] if self.labels else "-"


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
        flips = tuple(
            Flips(f.id, f.required, tuple(next(v.label for v in verdicts if v.finding.id == f.id) for _, _, verdicts in runs))
            for f in ids
        )
        codes = tuple(run.get("exit_code") if isinstance(run.get("exit_code"), int) else None for _, run, _ in runs)
        result.append(Series(name, tuple(folder for folder, _, _ in runs), codes, flips))  # type: ignore[arg-type]
    return result
