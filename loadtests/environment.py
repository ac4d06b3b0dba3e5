"""What a report must record about the machine and the code it measured."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil


def _run(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (result.stdout or result.stderr).strip() or None


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    commit = _run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    if commit is None or "fatal" in commit:
        return None
    dirty = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
    return f"{commit}{'-dirty' if dirty else ''}"


def ab_version(ab_path: str) -> str | None:
    output = _run([ab_path, "-V"])
    return output.splitlines()[0] if output else None


def environment(ab_path: str, database_source: str) -> dict[str, Any]:
    # Imported here: db.server_stats needs the drivers' URL helpers, and the modules that only read the
    # catalogue (loadtests.work, .model, .profiles) must not load a driver library.
    from db.server_stats import CPU_CLOCK as postgres_clock

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
        "ab_version": ab_version(ab_path),
        "database_source": database_source,
        "load_average": os.getloadavg(),
        "postgres_cpu_clock": postgres_clock,  # db.server_stats: "schedstat" (ns) or "ticks" (10 ms, sampled)
        "cpu_clock": CPU_CLOCK,  # the service's, ab's and the middleboxes' CPU: the same choice
    }


def _schedstat_ns(pid: int, fields: int) -> int | None:
    """The sum over every thread of ``pid`` of the first ``fields`` of ``/proc/<pid>/task/*/schedstat``
    (sched-stats.rst: time on a CPU (ns), time waiting on a runqueue (ns), timeslices run); None without schedstat."""
    tasks = list(Path(f"/proc/{pid}/task").glob("*/schedstat"))
    if not tasks:
        return None
    total = 0
    for task in tasks:
        try:
            total += sum(int(value) for value in task.read_text().split()[:fields])
        except (OSError, ValueError):
            continue  # a thread that ended between listing and reading
    return total


def _task_ns(pid: int) -> int | None:
    """Nanoseconds on a CPU of every thread of ``pid``, None without schedstat."""
    return _schedstat_ns(pid, 1)


def runnable_seconds(pid: int) -> float | None:
    """Seconds every thread of ``pid`` ran on a CPU or waited on a runqueue for one (schedstat's first two fields):
    what it asked of the cores, served or not. None without schedstat, or once the process is gone."""
    total = _schedstat_ns(pid, 2)
    return None if total is None else total / 1e9


def cpu_seconds(pid: int, *, children: bool = True) -> float | None:
    """CPU time used so far by ``pid`` and (``children``) its descendants: uvicorn's workers are children.

    From the scheduler's own nanosecond counters where the kernel keeps them (every thread, summed);
    else psutil's user + system times, which the kernel samples at the 10 ms timer tick."""
    try:
        process = psutil.Process(pid)
        family = [process, *(process.children(recursive=True) if children else ())]
    except psutil.NoSuchProcess:
        return None
    total = 0.0
    for member in family:
        ns = _task_ns(member.pid) if CPU_CLOCK == "schedstat" else None
        if ns is not None:
            total += ns / 1e9
            continue
        try:
            total += sum(member.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


def steal_seconds() -> float | None:
    """CPU time the host gave other guests so far, over every CPU (/proc/stat's ``steal``), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


#: How process CPU is read here: "schedstat" (ns, every thread) or "ticks" (psutil, 10 ms samples).
CPU_CLOCK = "schedstat" if Path("/proc/self/schedstat").exists() else "ticks"
