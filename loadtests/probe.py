"""Side measurements: a single client's latency, and /ping latency while the load runs."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarise(latencies_ms: list[float], errors: int) -> dict[str, Any]:
    return {
        "count": len(latencies_ms),
        "errors": errors,
        "p50_ms": percentile(latencies_ms, 50),
        "p90_ms": percentile(latencies_ms, 90),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms, default=None),
    }


@dataclass(frozen=True)
class Uncontended:
    """One client, one request at a time: the scenario's latency W with nothing in its way."""

    latency_s: float
    requests: int
    status: int
    body: str


def measure_uncontended(url: str, *, min_requests: int = 3, min_seconds: float = 0.5, max_requests: int = 200,
                        keepalive: bool = False, timeout: float = 120.0) -> Uncontended:
    """Median latency of sequential requests; stops at the first non-200 answer."""
    headers = {} if keepalive else {"Connection": "close"}  # like ab without -k: a connection per request
    latencies = []
    started = time.perf_counter()
    with httpx.Client(timeout=timeout, headers=headers) as client:
        while True:
            t0 = time.perf_counter()
            response = client.get(url)
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 200:
                return Uncontended(statistics.median(latencies), len(latencies), response.status_code, response.text[:500])
            done = len(latencies)
            if done >= max_requests or (done >= min_requests and time.perf_counter() - started >= min_seconds):
                return Uncontended(statistics.median(latencies), done, 200, "")


class PingProbe:
    """Hits ``/ping`` every ``interval`` seconds from a thread, recording each latency."""

    def __init__(self, base_url: str, interval: float = 0.1, timeout: float = 60.0) -> None:
        self.url = f"{base_url}/ping"
        self.interval = interval
        self.timeout = timeout
        self.latencies_ms: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ping-probe", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, headers={"Connection": "close"}) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - t0
                if ok:
                    self.latencies_ms.append(elapsed * 1000)
                else:
                    self.errors += 1
                self._stop.wait(max(0.0, self.interval - elapsed))

    def summary(self) -> dict[str, Any]:
        return summarise(self.latencies_ms, self.errors)

    def __enter__(self) -> PingProbe:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 1)
