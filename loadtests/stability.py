"""How often a verdict changes when nothing changed: findings across repeated runs of one setup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtests.findings import evaluate_all
from loadtests.legacy import read
from loadtests.results import RESULTS


@dataclass(frozen=True)
class Flips:
    """One finding's verdicts over a series of runs, in order."""

    id: str
    required: bool
    labels: tuple[str, ...]  # as the report shows them: "PASS, UNEXPLAINED" included
    statuses: tuple[str, ...]  # the verdicts proper: pass, fail, inconclusive, ...
    #: Each run's ratio (the centre of its paired interval), None where it had none.
    ratios: tuple[float | None, ...] = ()

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """The smallest and largest ratio over the runs: how far the same measurement moved."""
        known = [r for r in self.ratios if r is not None]
        return (min(known), max(known)) if known else None

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
    seconds: tuple[float | None, ...] = ()  # each run's wall time, start to finish

    @property
    def duration_range(self) -> tuple[float, float] | None:
        """The shortest and longest run, in seconds."""
        known = [s for s in self.seconds if s is not None]
        return (min(known), max(known)) if known else None

    @property
    def required_changes(self) -> int:
        return sum(f.changes for f in self.flips if f.required)


def verdicts_of(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """run.json and the folder's verdicts: judged from results.jsonl, or as run.json recorded them
    (a folder kept for its verdicts alone, as results/stability/ is)."""
    run, records = read(folder)
    if (folder / RESULTS).exists():
        return run, [verdict.to_dict() for verdict in evaluate_all(records, run)]
    return run, list(run.get("verdicts") or [])


def wall_seconds(run: dict[str, Any]) -> float | None:
    """How long a run took, from run.json's started and finished."""
    try:
        return (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def series(folders: list[Path]) -> list[Series]:
    """Group run folders by profile (in the given order) and line up their verdicts."""
    by_profile: dict[str, list[tuple[Path, dict[str, Any], dict[str, dict[str, Any]]]]] = {}
    for folder in folders:
        run, verdicts = verdicts_of(folder)
        name = str((run.get("profile") or {}).get("name") or "?")
        by_profile.setdefault(name, []).append((folder, run, {v["id"]: v for v in verdicts}))
    result = []
    for name, runs in by_profile.items():
        ids = list(dict.fromkeys(id for _, _, verdicts in runs for id in verdicts))
        flips = []
        for id in ids:
            found = [verdicts.get(id, {"status": "not measured", "label": "NOT MEASURED"}) for _, _, verdicts in runs]
            required = any(v.get("required") for _, _, verdicts in runs for v in [verdicts.get(id, {})])
            ratios = tuple(ratio.get("center") if isinstance(ratio := v.get("ratio"), dict) else None for v in found)
            flips.append(Flips(id, required, tuple(v["label"] for v in found), tuple(v["status"] for v in found), ratios))
        codes = tuple(code if isinstance(code := run.get("exit_code"), int) else None for _, run, _ in runs)
        seconds = tuple(wall_seconds(run) for _, run, _ in runs)
        result.append(Series(name, tuple(folder for folder, _, _ in runs), codes, tuple(flips), seconds))
    return result
