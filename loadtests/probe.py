"""Side measurements: a single client's latency, and /ping latency while the load runs.

The /ping probe is open-loop (wrk2's answer to coordinated omission): it sends on a fixed
schedule whether or not earlier probes have answered, and times each probe from the moment
it was *scheduled*. A probe that waits for its answer before sending the next would take
two samples during a 2 s stall and call it a short one; this one takes a hundred, and each
of them reports the stall it sat in.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TypedDict
from urllib.parse import urlsplit

import httpx

from app import timing as server_timing
from loadtests.stats import percentiles

#: Probes are sent this often by default: 50 a second costs the server little next to ab's load.
PING_INTERVAL_S = 0.02


class PingSummary(TypedDict):
    """/ping latencies of one measurement, in ms from each probe's scheduled send time."""

    count: int
    errors: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    interval_ms: float
    #: How late the probe's own sends ran behind the schedule at worst (the probe's own health).
    max_send_lag_ms: float | None


def summarise(latencies_ms: list[float], errors: int, interval_s: float, max_send_lag_ms: float | None) -> PingSummary:
    p50, p90, p99 = percentiles(latencies_ms, (50, 90, 99))
    return {
        "count": len(latencies_ms), "errors": errors, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
        "max_ms": max(latencies_ms, default=None), "interval_ms": interval_s * 1000, "max_send_lag_ms": max_send_lag_ms,
    }


@dataclass(frozen=True)
class Uncontended:
    """One client, one request at a time: the scenario's latency W with nothing in its way, and the
    server's share of it S (its Server-Timing header), both medians."""

    latency_s: float
    requests: int
    status: int
    body: str
    server_s: float | None = None
    #: The event loop's CPU over S (Server-Timing ``loop``): the part of S the loop spends working, not waiting.
    loop_cpu_s: float | None = None


def measure_uncontended(url: str, *, min_requests: int = 3, min_seconds: float = 0.5, max_requests: int = 200,
                        keepalive: bool = False, timeout: float = 120.0) -> Uncontended:
    """Median latency of sequential requests; stops at the first non-200 answer."""
    headers = {} if keepalive else {"Connection": "close"}  # like ab without -k: a connection per request
    latencies, server_ms, loop_ms = [], [], []
    started = time.perf_counter()
    with httpx.Client(timeout=timeout, headers=headers) as client:
        while True:
            t0 = time.perf_counter()
            response = client.get(url)
            latencies.append(time.perf_counter() - t0)
            timing = response.headers.get("server-timing")
            if (held := server_timing.parse(timing)) is not None:
                server_ms.append(held)
            if (worked := server_timing.parse(timing, "loop")) is not None:
                loop_ms.append(worked)
            if response.status_code != 200:
                return Uncontended(statistics.median(latencies), len(latencies), response.status_code, response.text[:500])
            done = len(latencies)
            if done >= max_requests or (done >= min_requests and time.perf_counter() - started >= min_seconds):
                server_s = statistics.median(server_ms) / 1000 if server_ms else None
                loop_cpu_s = statistics.median(loop_ms) / 1000 if loop_ms else None
                return Uncontended(statistics.median(latencies), done, 200, "", server_s, loop_cpu_s)


class PingProbe:
    """Sends ``GET /ping`` every ``interval`` seconds from its own thread and event loop, open-loop.

    Usage::

        with PingProbe("http://127.0.0.1:8000") as probe:
            ...  # the load
            probe.window(start, end)["p50_ms"]  # the probes scheduled in [start, end], once all have answered
        probe.summary()["p50_ms"]

    Leaving the block stops the schedule and waits up to ``drain_timeout`` for probes still in
    flight: those are the ones a stalled server held, and they count.
    """

    def __init__(self, base_url: str, interval: float = PING_INTERVAL_S, *, timeout: float = 60.0,
                 drain_timeout: float = 30.0) -> None:
        self.url = f"{base_url}/ping"
        parts = urlsplit(self.url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._request = f"GET {parts.path} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode()
        self.interval = interval
        self.timeout = timeout
        self.drain_timeout = drain_timeout
        #: (scheduled send time on time.monotonic(), latency in ms) of every answered probe.
        self.answered: list[tuple[float, float]] = []
        #: Scheduled send times of the probes that failed, and of those still waiting for an answer.
        self.failed: list[float] = []
        self._in_flight: set[float] = set()
        self.errors = 0
        self.max_send_lag_ms: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="ping-probe", daemon=True)

    async def _one(self, scheduled: float) -> None:
        self._in_flight.add(scheduled)
        try:
            ok = await asyncio.wait_for(self._get(), self.timeout)
        except (TimeoutError, OSError, ValueError):
            ok = False
        if ok:
            self.answered.append((scheduled, (time.monotonic() - scheduled) * 1000))
        else:
            self.failed.append(scheduled)
            self.errors += 1
        self._in_flight.discard(scheduled)

    async def _get(self) -> bool:
        """One GET /ping on a connection of its own, like ab without -k: True for a 200."""
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, (self._host, self._port))
            await loop.sock_sendall(sock, self._request)
            answer = b""
            while chunk := await loop.sock_recv(sock, 4096):  # to the server's close: the answer is whole
                answer += chunk
        return answer.split(b" ", 2)[1:2] == [b"200"]

    async def _run(self) -> None:
        # Plain sockets, not an HTTP client library: at 50 probes a second httpx cost this process 30% of a
        # core, taken from the machine it measures; a stalled server queues probes there, not here.
        tasks: set[asyncio.Task[None]] = set()
        start, sent, worst_lag = time.monotonic(), 0, 0.0
        while not self._stop.is_set():
            scheduled = start + sent * self.interval
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            worst_lag = max(worst_lag, time.monotonic() - scheduled)
            task = asyncio.create_task(self._one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        self.max_send_lag_ms = worst_lag * 1000 if sent else None
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.drain_timeout)
            for task in pending:
                task.cancel()
            self.errors += len(pending)

    @property
    def latencies_ms(self) -> list[float]:
        return [latency for _, latency in self.answered]

    def summary(self) -> PingSummary:
        return summarise(self.latencies_ms, self.errors, self.interval, self.max_send_lag_ms)

    def window(self, start: float, end: float) -> PingSummary:
        """The probes scheduled within [start, end] (time.monotonic()), once every one of them has answered.

        The probe keeps running; a stalled server answers late, so this waits (up to the probe's timeout)
        for the window's last probes rather than leave out the ones a stall held."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and any(start <= at <= end for at in list(self._in_flight)):
            time.sleep(0.005)
        chosen = [latency for at, latency in list(self.answered) if start <= at <= end]
        errors = sum(1 for at in list(self.failed) if start <= at <= end)
        return summarise(chosen, errors, self.interval, self.max_send_lag_ms)

    def __enter__(self) -> PingProbe:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(self.drain_timeout + self.timeout + 1)
