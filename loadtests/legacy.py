"""Run folders written before steady windows: read so that their figures keep their meaning.

Until the steady-state samples (``sample``), every record's rate was ab's own over the whole
run (``ab -n N`` start to end, start-up included) and records had no ``steady`` or ``method``.
That is exactly what ``method`` "ab whole run" means now, so such a record is labelled so, and
``results.successful_rps`` reads ab's figure for it, as it does for the article profile's.
Nothing else is changed: such runs have no blocks, so their ratios pair within a round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtests.results import Record, read_run

#: ``Record.method`` of a figure counted over ab's whole run.
WHOLE_RUN = "ab whole run"


def upgrade(records: list[Record]) -> list[Record]:
    """``records`` with every pre-steady record labelled as ab's whole-run figure (new records untouched)."""
    return [{**record, "method": WHOLE_RUN} if _before_steady(record) else record for record in records]


def _before_steady(record: Record) -> bool:
    return "steady" not in record and record.get("method") is None and bool(record.get("ab"))


def read(folder: Path) -> tuple[dict[str, Any], list[Record]]:
    """``results.read_run``, old folders' records labelled by how they were counted."""
    run, records = read_run(folder)
    return run, upgrade(records)
