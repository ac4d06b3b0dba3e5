"""A run folder: what was measured, written as it is measured, and the typed record of one measurement.

Layout of ``runs/<stamp>-<profile>/``:

- ``run.json``: the profile, the command line, the environment, and the ``/config`` of each
  server the run started (rewritten whenever one is added);
- ``results.jsonl``: one ``Record`` per finished measurement, appended and fsynced at once,
  so a crash, Ctrl-C or SIGTERM keeps everything measured so far. Every repetition of a case
  is its own line, told apart by ``round``;
- ``report.md``, ``report.html`` and ``*.png``: rendered from the two files above (also after
  a partial run, and again by ``iobench-load report RUN_DIR``);
- ``server-*.log``: the service's own output, one file per server started.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from loadtests.probe import PingSummary
from loadtests.work import WirePerRequest

RESULTS = "results.jsonl"
#: The same records compressed, as a folder kept for a series is committed (results/drivers-stability).
RESULTS_PACKED = "results.jsonl.gz"
RUN = "run.json"
REPORT = "report.md"
HTML_REPORT = "report.html"

#: A measurement whose failed + non-2xx share is above this says nothing about throughput.
MAX_ERROR_SHARE = 0.01


class Record(TypedDict, total=False):
    """One measurement: one case, at one concurrency, in one round (a ``results.jsonl`` line)."""

    # The case: its key (the scenario id, plus ``[file]`` for file cases) and the scenario's fields.
    case: str
    id: str
    workload: str
    style: str
    driver: str
    twin: str | None
    kind: str
    path: str
    parameters: list[str]
    pooled: bool
    article_case: int | None
    demonstrates: str
    query: dict[str, str]
    # Why and when it was measured.
    block: str  # the block (one server) it was measured in: ratios pair only within a block (loadtests.plan)
    round: int  # the repetition: cases of one round share a time window, so ratios pair within it
    position: int  # its place in the round's sequence: compared pairs stand next to each other
    sweep: bool  # a point of a concurrency sweep
    for_finding: str | None  # a finding's own concurrency (not the profile's)
    rtt_ms: float  # the round-trip time the wire proxy added between the service and Postgres (0: direct)
    variant: bool  # beside the main measurements (another RTT level, PgBouncer): no finding judges it
    via: str  # how the service reached Postgres: "direct" or "pgbouncer"
    workers: int  # uvicorn workers of the server measured
    pgbouncer: dict[str, Any] | None  # PgBouncer's pools after the run: server_connections, pool_size, clients
    concurrency: int
    requests: int | None
    keepalive: bool
    server: int  # index into run.json's servers
    threadpool_tokens: int
    started: str
    duration_s: float
    error: str | None
    # What was measured.
    engine: str | None  # what made the load: "ab" (``generators.AbGroup``) or "locust" (``locust_load.Swarm``)
    generators: dict[str, Any] | None  # generators.GeneratorUse.to_dict(): how many, each one's CPU (cores) in the window
    method: str | None  # how the rate was counted: "completion log", "ab -g whole seconds", "ab whole run"
    steady: dict[str, Any] | None  # steady.Steady.to_dict(): the window's rate, completions and length
    warm_s: float | None  # the warm-up discarded before the window
    window_s: float | None  # the window's length
    foreign_in_window: int | None  # other routes' completions in the window (an earlier sample's leftovers), not counted
    uncontended_ms: float | None  # W: one client, one request at a time (the calibration)
    ping_uncontended_ms: float | None  # /ping's own latency with one client, on the same server (the calibration)
    server_ms: float | None  # S: the server's share of W (its Server-Timing header)
    loop_cpu_ms: float | None  # the event loop's CPU within S (Server-Timing ``loop``)
    model: dict[str, Any] | None  # model.Prediction.to_dict(), from the calibration alone
    efficiency: float | None  # successful rps / predicted rps
    ab: dict[str, Any] | None  # ab.AbResult.to_dict(): the whole ab run, start-up included (its failures)
    ping: PingSummary | None  # /ping probes scheduled in the window
    cpu: dict[str, Any] | None  # work.CpuPerRequest.to_dict() over the window: service, Postgres, ab, steal
    calibration_cpu: dict[str, Any] | None  # the same at one client in the calibration: what the prediction used
    cpu_utilisation: float | None  # service CPU seconds / wall seconds over the window
    wire: WirePerRequest | None  # round trips, statements, Parses, sessions per request


def is_main(record: Record) -> bool:
    """A measurement at the profile's concurrency and RTT (not a sweep point, a finding's extra or a variant)."""
    return not record.get("sweep") and not record.get("for_finding") and not record.get("variant")


def successful_rps(record: Record | None) -> float | None:
    """Successful (2xx) responses per second in the steady window: iobench's throughput. None without a result.

    The article profile's runs (``method`` "ab whole run") are ab's own figure, start-up included."""
    if record is None or record.get("error"):
        return None
    if record.get("method") == "ab whole run":
        value = (record.get("ab") or {}).get("successful_per_second")
    else:
        value = (record.get("steady") or {}).get("rps")
    return value if value is not None and value > 0 else None


def failures(record: Record) -> int | None:
    """ab's failed plus non-2xx responses, or None when ab gave no result."""
    result = record.get("ab")
    if not result:
        return None
    return int(result.get("failed") or 0) + int(result.get("non_2xx") or 0)


def error_share(record: Record) -> float | None:
    """Failed and non-2xx responses as a share of the requests ab completed (ab stops steady runs itself)."""
    bad = failures(record)
    if bad is None:
        return None
    done = (record.get("ab") or {}).get("complete") or 0
    return min(1.0, bad / done) if done else 1.0


def too_many_errors(record: Record) -> bool:
    share = error_share(record)
    return share is not None and share > MAX_ERROR_SHARE


def ping_count(record: Record) -> int:
    """How many /ping probes answered during the measurement (0 without a probe)."""
    ping = record.get("ping")
    return ping.get("count", 0) if ping else 0


def predicted_rps(record: Record | None) -> float | None:
    """The model's steady-state throughput, from the calibration alone."""
    value = ((record or {}).get("model") or {}).get("rps")
    return value if value is not None and value > 0 else None


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

    def append(self, record: Record) -> None:
        with open(self.path / RESULTS, "a", encoding="utf-8") as file:
            file.write(json.dumps(record, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def log_path(self, name: str) -> Path:
        return self.path / f"server-{name}.log"


def _records_text(path: Path) -> str | None:
    if (path / RESULTS).exists():
        return (path / RESULTS).read_text()
    if (path / RESULTS_PACKED).exists():
        return gzip.decompress((path / RESULTS_PACKED).read_bytes()).decode()
    return None


def read_run(path: Path) -> tuple[dict[str, Any], list[Record]]:
    """run.json and every complete line of results.jsonl, or of results.jsonl.gz (a torn last line is skipped)."""
    run = json.loads((path / RUN).read_text()) if (path / RUN).exists() else {}
    records: list[Record] = []
    if (text := _records_text(path)) is not None:
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                record.setdefault("round", 0)  # runs written before repetitions had one round
                records.append(record)  # type: ignore[arg-type]  # JSON as written by append()
    return run, records


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
