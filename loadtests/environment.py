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
    from db.server_stats import CPU_CLOCK

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
        "postgres_cpu_clock": CPU_CLOCK,  # db.server_stats: "schedstat" (ns) or "ticks" (10 ms, sampled)
    }


def cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by ``pid`` and its children (uvicorn's workers are children)."""
    try:
        process = psutil.Process(pid)
        total = sum(process.cpu_times()[:2])
        for child in process.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                continue
        return total
    except psutil.NoSuchProcess:
        return None
