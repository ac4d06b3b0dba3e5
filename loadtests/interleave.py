"""Two routes' service CPU per request, measured in alternating slices by one client.

What a route costs the service differs between two catalogue routes by a few percent, while on
a shared 2-core VM the CPU one request costs drifts by 15-25% between two ab runs seconds apart,
and by as much between short ab slices (40 clients, Postgres and ab share the cores). So the
instrument findings compare their two routes here instead: one client alternates between them
in short slices, A B then B A, and the service's CPU over each slice (every thread of the
service and its workers, from ``/proc/<pid>/task/<tid>/schedstat``, nanoseconds) divided by its
requests gives one pair per two slices. Adjacent slices see the same machine, so the pairs are
judged as paired samples, as criterion and hyperfine compare two close things.

Under a CPU-bound service throughput is the inverse of CPU per request (the utilisation law),
so requests per CPU-second stand for throughput. With one client every request also pays the
event loop's wake-ups that a loaded server shares among requests: the base is larger than
under load, so a ratio read here is somewhat nearer 1 than the same difference under ab.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

#: Slice pairs per measurement and requests per slice: about 3 s per pair of routes on this machine, for a
#: 95% interval of about ±2.5% over the three rounds of the default profile (one pair scatters by ~10%).
SLICE_PAIRS = 20
SLICE_REQUESTS = 40
_PROC = Path("/proc")


def service_cpu_ns(pid: int) -> int | None:
    """Nanoseconds on a CPU of every thread of ``pid`` and of its children; None without schedstat."""
    try:
        pids = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for each in pids:
        for task in (_PROC / str(each) / "task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended between listing and reading
    return total or None


@dataclass(frozen=True)
class Interleaved:
    """Service CPU ms per request of two routes, one pair per two adjacent slices."""

    against: str
    slice_requests: int
    cpu_ms: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"against": self.against, "slice_requests": self.slice_requests, "cpu_ms": [list(p) for p in self.cpu_ms]}


def measure_interleaved(url: str, other_url: str, against: str, pid: int, *, keepalive: bool = False,
                        pairs: int = SLICE_PAIRS, slice_requests: int = SLICE_REQUESTS) -> Interleaved | None:
    """``url`` and ``other_url`` in alternating slices (A B, B A, ...); None where schedstat is not kept.

    Raises ``httpx.HTTPError`` on a failed request or a non-2xx answer: a slice with errors is not a cost.
    """
    if service_cpu_ns(pid) is None:
        return None
    headers = {} if keepalive else {"Connection": "close"}  # like ab without -k: a connection per request
    found: list[tuple[float, float]] = []
    with httpx.Client(headers=headers, timeout=30.0) as client:

        def slice_ms(target: str) -> float:
            before = service_cpu_ns(pid) or 0
            for _ in range(slice_requests):
                client.get(target).raise_for_status()
            return ((service_cpu_ns(pid) or 0) - before) / 1e6 / slice_requests

        slice_ms(url), slice_ms(other_url)  # a slice each first: connections, caches, the loop's first wake-ups
        for index in range(pairs):
            if index % 2 == 0:
                first = slice_ms(url)
                found.append((first, slice_ms(other_url)))
            else:
                second = slice_ms(other_url)
                found.append((slice_ms(url), second))
    return Interleaved(against, slice_requests, tuple(found))
