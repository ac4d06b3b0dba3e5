"""Synthetic runs for the report, findings, comparison and stability tests: no server, database or ab.

Every record is a full ``Record`` as the harness writes it, its prediction computed by the real
model; ``noise`` scales one round's throughput, so a test can place a ratio's interval exactly.

``python tests/synthetic.py FOLDER`` writes a synthetic run and its report to FOLDER.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TypedDict

from app.catalogue import DRIVERS, SCENARIOS_BY_ID
from loadtests.model import ServerShape, predict
from loadtests.profiles import PROFILES, cases_for
from loadtests.results import RESULTS, RUN, Record

SECONDS, CONCURRENCY, TOKENS, POOL = 0.05, 40, 16, 40
POOLED = [driver.name for driver in DRIVERS if driver.pooled]
SHAPE = ServerShape(threadpool_tokens=TOKENS, pool_max={name: POOL for name in POOLED}, workers=1, cpu_count=2)
#: Uncontended latency W per workload (ms), as a 2-core laptop measures it.
W_MS = {"wait": 103.0, "pg_sleep": 105.0, "lookup": 2.2, "report": 9.0, "write": 4.0}
#: Per-round multiplicative noise, the same for every case of a round unless a test says otherwise.
ROUND_NOISE = (1.0, 0.97, 1.03)


class RecordOptions(TypedDict, total=False):
    """make_record's keywords that helpers pass through (round, eff and noise they set themselves)."""

    c: int
    w_ms: float | None
    sweep: bool
    for_finding: str | None
    error: str | None
    non_2xx: int
    failed: int
    ping_p50: float | None
    ping_count: int
    cpu_util: float | None
    server: int


def make_record(
    key: str,
    *,
    round: int = 0,
    c: int = CONCURRENCY,
    eff: float = 0.92,
    noise: float = 1.0,
    w_ms: float | None = None,
    sweep: bool = False,
    for_finding: str | None = None,
    error: str | None = None,
    non_2xx: int = 0,
    failed: int = 0,
    ping_p50: float | None = None,
    ping_count: int = 40,
    cpu_util: float | None = 0.45,
    server: int = 0,
    block: str = "synthetic",
    position: int = 0,
) -> Record:
    """A measurement record with every field of ``Record``, for the case ``key``."""
    scenario_id, _, name = key.partition("[")
    scenario = SCENARIOS_BY_ID[scenario_id]
    case = next(case for case in cases_for(scenario, SECONDS) if case.key == key)
    workload = scenario.workload.name
    if w_ms is None:
        w_ms = W_MS.get(workload) or (3.0 if "large" in name else 1.5)
    prediction = predict(scenario, c, w_ms / 1000, SHAPE)
    ok_rps = prediction.rps * eff * noise
    requests = max(c, 20, round_up(ok_rps * 0.8))
    seconds = (requests - failed - non_2xx) / ok_rps
    mean = c / ok_rps * 1000
    ab = {
        "complete": requests, "failed": failed, "non_2xx": non_2xx, "failed_connect": 0, "failed_receive": failed,
        "failed_length": 0, "failed_exceptions": 0, "requests_per_second": requests / seconds,
        "successful": requests - failed - non_2xx, "successful_per_second": ok_rps, "total_seconds": seconds,
        "mean_ms": mean, "p50_ms": mean * 0.95, "p90_ms": mean * 1.3, "p99_ms": mean * 1.8, "max_ms": mean * 2.2,
        "concurrency": c, "requests": requests, "keepalive": False,
    }
    if ping_p50 is None:
        ping_p50 = w_ms * 0.6 if scenario.style == "async-blocking" else 1.2
    ping = {"count": ping_count, "errors": 0, "p50_ms": ping_p50 * noise, "p90_ms": ping_p50 * 1.5, "p99_ms": ping_p50 * 2,
            "max_ms": ping_p50 * 2.2, "interval_ms": 20.0, "max_send_lag_ms": 0.4}
    record: Record = {
        **case.to_dict(),  # type: ignore[typeddict-item]  # the scenario's fields, as Record declares them
        "block": block, "round": round, "position": position, "method": "completion log",
        "steady": {"rps": ok_rps, "completions": round_up(ok_rps * 0.5), "seconds": 0.5, "method": "completion log"},
        "warm_s": 0.15, "window_s": 0.5, "ping_uncontended_ms": 0.9,
        "sweep": sweep, "for_finding": for_finding, "concurrency": c, "requests": requests,
        "keepalive": False, "server": server, "threadpool_tokens": TOKENS, "uncontended_ms": w_ms,
        "server_ms": w_ms * 0.9, "loop_cpu_ms": 0.2, "ab": ab, "model": prediction.to_dict(), "efficiency": eff * noise, "ping": ping,
        "cpu": {"service_s": 0.0008, "postgres_s": 0.0002 if scenario.driver.pooled else 0.0, "client_s": 0.0001,
                "new_sessions": 0},
        "calibration_cpu": None,
        "wire": {"requests": 10, "round_trips": 2.0, "statements": 2.0, "parses": 0.0, "sessions": 0.0}
        if scenario.driver.pooled else None,
        "cpu_utilisation": cpu_util, "started": "2026-11-25T18:00:00+00:00", "duration_s": 1.2, "error": None,
    }
    if error:
        record["ab"] = record["efficiency"] = record["ping"] = record["cpu_utilisation"] = record["steady"] = None
        record["error"] = error
    return record


def round_up(value: float) -> int:
    return int(value) + (value % 1 > 0)


#: Main cases of the synthetic run and their efficiency: every required finding passes.
MAIN = {
    "wait/sync/time": 0.97, "wait/async-blocking/time": 1.1, "wait/async/asyncio": 0.94, "wait/threadpool/time": 0.9,
    "pg_sleep/sync/psycopg2": 0.93, "pg_sleep/async-blocking/psycopg2": 1.1, "pg_sleep/threadpool/psycopg2": 0.88,
    "pg_sleep/sync/sqlalchemy-sync": 0.95, "pg_sleep/async-blocking/sqlalchemy-sync": 1.1, "pg_sleep/async/asyncpg": 0.9,
    "pg_sleep/sync/psycopg3-sync": 0.94, "pg_sleep/async/psycopg3-async": 0.91,
    "lookup/sync/psycopg2": 0.1, "lookup/async-blocking/psycopg2": 1.6, "lookup/async/asyncpg": 0.08,
    "lookup/async/sqlalchemy-async": 0.05, "report/sync/psycopg2": 0.4, "report/async/asyncpg": 0.2,
    "write/sync/psycopg2": 0.3, "file/sync/open[small.bin]": 0.3, "file/async/aiofiles[small.bin]": 0.2,
    "file/async-blocking/open[large.bin]": 0.95, "file/async/aiofiles[large.bin]": 0.9,
    # The driver table, FastAPI's share and the psycopg2 pool (no finding judges them).
    "lookup/minimal/psycopg2": 0.12, "lookup/minimal/asyncpg": 0.09, "lookup/sync/psycopg3-sync": 0.09,
    "lookup/sync/psycopg2-threaded": 0.105, "write/sync/psycopg2-threaded": 0.31, "write/async/asyncpg": 0.15,
}
#: /ping medians (ms) of the blocking-file pair: at c = 8 for F4, and at the profile's c for N6.
F4_PINGS = {"file/async-blocking/open[large.bin]": 30.0, "file/async/aiofiles[large.bin]": 3.5}
N6_PINGS = {"file/async-blocking/open[large.bin]": 60.0, "file/async/aiofiles[large.bin]": 25.0}


def make_records(rounds: int = 3) -> list[Record]:
    """A default-profile run: every case in ``rounds`` rounds, F4's pair at c = 8, and a sweep."""
    records: list[Record] = []
    for number in range(rounds):
        noise = ROUND_NOISE[number % len(ROUND_NOISE)]
        for position, (key, eff) in enumerate(MAIN.items()):
            records.append(make_record(key, round=number, eff=eff, noise=noise, ping_p50=N6_PINGS.get(key),
                                       cpu_util=0.97 if eff < 0.5 else 0.45, position=position))
        for position, (key, ping) in enumerate(F4_PINGS.items(), start=len(MAIN)):
            records.append(make_record(key, round=number, c=8, eff=0.9, noise=noise, ping_p50=ping, for_finding="F4-file",
                                       position=position))
    records.append(make_record("report/async/asyncpg", round=rounds, error="AbError: ab exited with code 1"))
    records += [make_record(key, c=c, sweep=True, eff=0.93) for key in ("wait/sync/time", "wait/async/asyncio")
                for c in (1, 16, 40, 80)]
    return records


def make_run(records: list[Record], **changes: Any) -> dict[str, Any]:
    profile = {**PROFILES["default"].to_dict(), "seconds": SECONDS}
    run: dict[str, Any] = {
        "profile": profile,
        "command": ["iobench-load", "--profile", "default"],
        "started": "2026-11-25T18:00:00+00:00",
        "finished": "2026-11-25T18:06:10+00:00",
        "status": "complete",
        "planned": len(records),
        "environment": {"date": "2026-11-25T18:00:00+00:00", "cpu_count": 2, "memory_gib": 7.7,
                        "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "python": "3.11.7", "git_commit": "96288c0",
                        "ab_version": "This is ApacheBench, Version 2.3 <$Revision: 1903618 $>",
                        "database_source": "localhost:5432", "load_average": [0.5, 0.4, 0.3]},
        "servers": [server_config(4101), server_config(4102)],
        "drivers": [driver.to_dict() for driver in DRIVERS],
        "error": None,
    }
    run.update(changes)
    return run


def server_config(pid: int, tokens: int = TOKENS, pool: int = POOL) -> dict[str, Any]:
    return {
        "pid": pid, "workers": 1, "event_loop": "uvloop.Loop", "threadpool_tokens": tokens, "python": "3.11.7",
        "implementation": "CPython", "cpu_count": 2,
        "pools": {name: {"driver": name, "kind": "pool", "min": 1, "max": pool} for name in POOLED},
        "libraries": {"fastapi": "0.115.6", "asyncpg": "0.30.0"},
        "database": {"server_version": "15.19", "max_connections": 100},
    }


def write_folder(folder: Path, records: list[Record], run: dict[str, Any], torn: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN).write_text(json.dumps(run, indent=2))
    text = "".join(json.dumps(record) + "\n" for record in records)
    if torn:
        text += json.dumps(make_record("wait/sync/time", c=40, sweep=True))[:57]  # a crash mid-write
    (folder / RESULTS).write_text(text)
    return folder


if __name__ == "__main__":
    from loadtests.report import write_report

    target = Path(sys.argv[1])
    records = make_records()
    print(write_report(write_folder(target, records, make_run(records))))
