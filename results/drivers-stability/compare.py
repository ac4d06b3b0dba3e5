"""The driver table across runs of the drivers profile: each row's ratio and interval per run, how many rows
are within ±10%, whether the runs' intervals overlap, and which driver each run found fastest per workload.

Run from the project root: ``.venv/bin/python results/drivers-stability/compare.py results/drivers
results/drivers-stability/run-2 results/drivers-stability/run-3``. A folder may hold ``results.jsonl.gz``
instead of ``results.jsonl`` (the runs kept here are compressed).
"""

from __future__ import annotations

import gzip
import itertools
import math
import shutil
import sys
import tempfile
from pathlib import Path

from loadtests.choices import DriverTable, driver_table
from loadtests.compare import load_run
from loadtests.stats import Interval
from loadtests.summary import summarise

#: ±10%: the half-width of a ratio's interval on the log scale.
HALF_WIDTH = 0.095
WORKLOADS = ("lookup", "report", "write")


def table_of(folder: Path) -> DriverTable:
    with tempfile.TemporaryDirectory() as scratch:
        if not (folder / "results.jsonl").is_file() and (folder / "results.jsonl.gz").is_file():
            shutil.copy(folder / "run.json", Path(scratch) / "run.json")
            with gzip.open(folder / "results.jsonl.gz", "rb") as packed, open(Path(scratch) / "results.jsonl", "wb") as out:
                shutil.copyfileobj(packed, out)
            folder = Path(scratch)
        run, records = load_run(folder)
        table = driver_table(records, {s.case: s for s in summarise(records)}, run)
    assert table is not None, f"{folder}: no driver table"
    return table


def half_width(interval: Interval) -> float:
    return (math.log(interval.high) - math.log(interval.low)) / 2


def main(folders: list[Path]) -> None:
    tables = [table_of(folder) for folder in folders]
    rows: dict[tuple[str, str], list[tuple[Interval, int]]] = {}
    for table in tables:
        for drivers in table.workloads:
            for entry in drivers.entries:
                if entry.ratio is not None:
                    rows.setdefault((drivers.workload, entry.driver), []).append((entry.ratio.interval, entry.ratio.rounds))
    print("| workload | driver | " + " | ".join(f"run {i + 1}: / psycopg2 [95%] (rounds)" for i in range(len(folders)))
          + " | intervals overlap |")
    print("|---|---|" + "---:|" * len(folders) + "---|")
    within, apart = [0] * len(folders), 0
    for (workload, driver), found in sorted(rows.items()):
        cells = []
        for i, (interval, rounds) in enumerate(found):
            narrow = half_width(interval) <= HALF_WIDTH
            within[i] += narrow
            cells.append(f"{interval.center:.3g} [{interval.low:.3g}, {interval.high:.3g}] ({rounds}){'' if narrow else ' wide'}")
        overlap = all(a.low <= b.high and b.low <= a.high for (a, _), (b, _) in itertools.combinations(found, 2))
        apart += not overlap
        print(f"| {workload} | {driver} | " + " | ".join(cells) + f" | {'yes' if overlap else '**no**'} |")
    print()
    print(f"- Runs: {', '.join(f'`{folder}`' for folder in folders)}.")
    print(f"- Rows within ±10% (half-width <= {HALF_WIDTH} on the log scale): "
          + ", ".join(f"{n} of {len(rows)}" for n in within) + ".")
    print(f"- Rows whose intervals do not all overlap: {apart} of {len(rows)}.")
    for name in WORKLOADS:
        verdicts = []
        for table in tables:
            best = next((w.fastest for w in table.workloads if w.workload == name), None)
            if best is None or best.ratio is None:
                verdicts.append("-")
                continue
            interval = best.ratio.interval
            verdicts.append(f"{best.best.split('/')[-1]} over {best.runner_up.split('/')[-1]} {interval.center:.3g} "
                            f"[{interval.low:.3g}, {interval.high:.3g}]{'' if best.resolved else ' (not resolved)'}")
        print(f"- Fastest, {name}: " + "; ".join(verdicts) + ".")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
