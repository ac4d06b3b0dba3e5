"""A run folder: what was measured, written as it is measured.

Layout of ``runs/<stamp>-<profile>/``:

- ``run.json``: the profile, the command line, the environment, and the ``/config`` of each
  server the run started (rewritten whenever one is added);
- ``results.jsonl``: one JSON object per finished measurement, appended and fsynced at once,
  so a crash or Ctrl-C keeps everything measured so far;
- ``report.md`` and ``*.png``: rendered from the two files above (also after a partial run);
- ``server-*.log``: the service's own output, one file per server started.

A measurement record (``results.jsonl`` line) holds: ``case`` (key, e.g. ``file/sync/open[large.bin]``),
the scenario's fields (``Scenario.to_dict()``: ``id``, ``workload``, ``style``, ``driver``, ``twin``,
``kind``, ``path``, ``parameters``, ``pooled``, ``article_case``, ``demonstrates``), ``query`` (dict), ``sweep`` (bool),
``concurrency``, ``requests``, ``keepalive``, ``server`` (index into run.json's servers),
``threadpool_tokens``, ``uncontended_ms`` (W, one client), ``cpu_ms_per_request`` (or null),
``ab`` (AbResult.to_dict() or null), ``model`` (Prediction.to_dict()), ``efficiency``
(measured / predicted rps or null), ``ping`` (side-client latency summary during the run:
``count``, ``errors``, ``p50_ms``, ``p90_ms``, ``p99_ms``, ``max_ms``), ``cpu_utilisation``
(server CPU seconds / wall seconds during the run, or null), ``for_finding`` (null, or the id
of the finding that asked for this extra measurement at its own concurrency), ``started`` (ISO time),
``duration_s``, and ``error`` (null, or what went wrong for this case).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = "results.jsonl"
RUN = "run.json"
REPORT = "report.md"


def is_main(record: dict[str, Any]) -> bool:
    """A measurement at the profile's concurrency (not a sweep point, not a finding's extra)."""
    return not record.get("sweep") and not record.get("for_finding")


def default_run_dir(profile: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path, n = root / f"{stamp}-{profile}", 1
    while path.exists():  # two runs started in the same second must not share a folder
        n += 1
        path = root / f"{stamp}-{profile}-{n}"
    return path


class RunFolder:
    """Appends measurements durably and keeps run.json current."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.run: dict[str, Any] = {}

    def write_run(self, **fields: Any) -> None:
        self.run.update(fields)
        _write_atomically(self.path / RUN, json.dumps(self.run, indent=2, default=str))

    def add_server(self, config: dict[str, Any]) -> int:
        servers = self.run.setdefault("servers", [])
        servers.append(config)
        self.write_run()
        return len(servers) - 1

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path / RESULTS, "a", encoding="utf-8") as file:
            file.write(json.dumps(record, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def log_path(self, name: str) -> Path:
        return self.path / f"server-{name}.log"


def read_run(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """run.json and every complete line of results.jsonl (a torn last line is skipped)."""
    run = json.loads((path / RUN).read_text()) if (path / RUN).exists() else {}
    records = []
    if (path / RESULTS).exists():
        for line in (path / RESULTS).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return run, records


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
