"""``--engine locust``: the harness's side of a Locust master and its workers (``loadtests.swarm`` runs them).

``Swarm`` starts the master as a process of its own (Locust's gevent must stay out of the harness), and with
``processes`` N it starts N local workers beside it; with ``expect_workers`` N it waits for N workers started
elsewhere (``iobench-load worker --master HOST``). Each sample is a ``LocustRun``: the master aims the workers at
the case and starts c users, the harness counts its steady window on the completion log as for ab, and ``stop``
reads Locust's own stats (every worker's, pooled by Locust) into the same ``AbResult`` fields a report reads.

A worker that dies or goes missing mid-run is a ``GeneratorLost``: the harness records the case with its error and
stops, keeping every earlier result (exit 3), as for a service that died.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from loadtests.ab import AbResult
from loadtests.environment import cpu_seconds, runnable_seconds
from loadtests.errors import HarnessError

#: Seconds to wait for workers started elsewhere to connect.
EXPECT_S = 300.0
#: Seconds to wait for local workers to connect.
LOCAL_S = 30.0
LATENCY = "Locust's own percentiles: every worker's response times pooled by Locust's master"


class GeneratorLost(HarnessError):
    """A load generator (a Locust worker) died or went missing mid-run; the message names it and the case."""


class SwarmError(HarnessError):
    """The Locust master could not be started or answered with an error."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _command(role: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "loadtests.swarm", role, *args]


class Swarm:
    """A Locust master (and ``processes`` local workers), alive for a whole run::

        with Swarm(processes=2, log_dir=folder) as swarm:
            with swarm.load(url, 40, keepalive=False, timeout_s=30) as load:
                ...
                result = load.stop()
    """

    def __init__(self, *, processes: int = 0, expect_workers: int = 0, bind: str = "127.0.0.1", port: int | None = None,
                 log_dir: Path | None = None) -> None:
        if (processes > 0) == (expect_workers > 0):
            raise ValueError("a swarm has either local processes or expected workers")
        self.processes, self.expect_workers = processes, expect_workers
        self.bind = bind
        self.port = port if port is not None else (free_port() if processes else 5557)
        self.log_dir = log_dir
        self.master: subprocess.Popen[str] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    @property
    def size(self) -> int:
        return self.processes or self.expect_workers

    def _log(self, name: str) -> IO[bytes] | int:
        if self.log_dir is None:
            return subprocess.DEVNULL
        handle = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(handle)
        return handle

    def __enter__(self) -> Swarm:
        try:
            self.master = subprocess.Popen(_command("master", "--bind", self.bind, "--port", str(self.port)),
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log("locust-master"),
                                           text=True)
            self._answer()  # "listening"
            self.workers = [subprocess.Popen(_command("worker", "--master", "127.0.0.1", "--master-port", str(self.port)),
                                             stdout=subprocess.DEVNULL, stderr=self._log(f"locust-worker-{n}"))
                            for n in range(self.processes)]
            waited = self.ask({"cmd": "wait", "workers": self.size, "timeout": LOCAL_S if self.processes else EXPECT_S})
            if not waited.get("ok"):
                raise SwarmError(str(waited.get("error")))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _answer(self) -> dict[str, Any]:
        assert self.master is not None and self.master.stdout is not None
        while line := self.master.stdout.readline():
            if line.startswith("{"):  # anything else on its stdout is Locust's own, not an answer
                answer: dict[str, Any] = json.loads(line)
                return answer
        raise SwarmError(f"the Locust master exited (code {self.master.poll()}); see locust-master.log in the run folder")

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.master is not None and self.master.stdin is not None
        try:
            self.master.stdin.write(json.dumps(command) + "\n")
            self.master.stdin.flush()
        except BrokenPipeError:
            raise SwarmError(f"the Locust master exited (code {self.master.poll()})") from None
        return self._answer()

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    def dead_workers(self) -> list[int]:
        """Local workers that exited (their pids)."""
        return [worker.pid for worker in self.workers if worker.poll() is not None]

    def load(self, url: str, concurrency: int, *, keepalive: bool, timeout_s: float) -> LocustRun:
        if concurrency < self.size:
            raise ValueError(f"{self.size} Locust workers need at least as many users, got c = {concurrency}")
        return LocustRun(self, url, concurrency, keepalive)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.master is not None and self.master.poll() is None:
            try:
                assert self.master.stdin is not None
                self.master.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.master.stdin.close()
                self.master.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.master.kill()
                self.master.wait()
        for worker in self.workers:
            try:
                worker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for handle in self._logs:
            handle.close()


class LocustRun:
    """One sample's load from the swarm: c users on the case, until ``stop`` (``generators.Load``)."""

    def __init__(self, swarm: Swarm, url: str, concurrency: int, keepalive: bool) -> None:
        self.swarm, self.url, self.concurrency, self.keepalive = swarm, url, concurrency, keepalive
        self.started_ns = 0.0
        self.started_epoch = self.stopped_epoch = 0.0
        self.report: dict[str, Any] | None = None

    def start(self) -> LocustRun:
        if dead := self.swarm.dead_workers():
            raise GeneratorLost(f"a Locust worker was lost (local worker pid {', '.join(map(str, dead))} exited) before "
                                f"the sample of {self.url}")
        self.started_epoch, self.started_ns = time.time(), time.monotonic_ns()
        answer = self.swarm.ask({"cmd": "start", "url": self.url, "users": self.concurrency, "keepalive": self.keepalive,
                                 "workers": self.swarm.size})
        if not answer.get("ok"):
            error = GeneratorLost if answer.get("lost") else SwarmError
            raise error(f"Locust: {answer.get('error')}")
        return self

    @property
    def pids(self) -> list[int]:
        return self.swarm.pids

    @property
    def finished(self) -> bool:
        """A local worker exited: the window ends now, and ``stop`` says so."""
        return bool(self.swarm.dead_workers())

    def generator_cpu(self) -> list[float | None] | None:
        if not self.swarm.workers:
            return None  # workers elsewhere: Locust's own CPU figure per worker comes with the report
        return [cpu_seconds(pid, children=False) for pid in self.swarm.pids]

    def generator_demand(self) -> list[float | None] | None:
        if not self.swarm.workers:
            return None
        return [runnable_seconds(pid) for pid in self.swarm.pids]

    def stop(self) -> AbResult:
        self.stopped_epoch = time.time()
        answer = self.swarm.ask({"cmd": "stop", "workers": self.swarm.size})
        if not answer.get("ok"):
            raise SwarmError(f"Locust: {answer.get('error')}")
        self.report = answer
        dead = self.swarm.dead_workers()
        if dead or answer.get("lost"):
            who = ", ".join([f"local worker pid {pid} exited" for pid in dead]
                            + [f"worker {node} stopped reporting" for node in answer.get("lost") or []])
            raise GeneratorLost(f"a Locust worker was lost mid-run ({who}): {self.url}")
        return locust_result(answer, self.concurrency, self.keepalive, time.monotonic_ns() - self.started_ns)

    def gnuplot_text(self) -> str:
        return ""

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"engine": "locust", "count": self.swarm.size, "latency": LATENCY}
        if not self.swarm.workers and self.report is not None:
            # Workers elsewhere: Locust's own figure, each worker's CPU percent at its last heartbeat.
            info["cpu"] = [w["cpu_usage"] / 100 if w.get("cpu_usage") is not None else None
                           for w in (self.report.get("workers") or {}).values()]
        return info

    def __enter__(self) -> LocustRun:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.report is None and self.swarm.master is not None and self.swarm.master.poll() is None:
            try:  # stopped by an error: leave the workers idle for the next sample or the swarm's exit
                self.swarm.ask({"cmd": "stop", "workers": self.swarm.size})
            except HarnessError:
                pass


def _ms(value: Any) -> float:
    return float(value) if value is not None else math.nan


def locust_result(answer: dict[str, Any], concurrency: int, keepalive: bool, elapsed_ns: float) -> AbResult:
    """Locust's pooled stats in ``AbResult``'s fields: Locust counts every answer but 2xx/3xx as a failure, so its
    failures are ``failed`` and ``non_2xx`` stays 0."""
    requests, failures = int(answer["requests"]), int(answer["failures"])
    seconds = elapsed_ns / 1e9
    successful = max(0, requests - failures)
    return AbResult(complete=requests, failed=failures, non_2xx=0, failed_connect=0, failed_receive=0, failed_length=0,
                    failed_exceptions=0, requests_per_second=requests / seconds if seconds > 0 else math.nan,
                    successful=successful, successful_per_second=successful / seconds if seconds > 0 else math.nan,
                    total_seconds=seconds, mean_ms=_ms(answer.get("mean_ms")), p50_ms=_ms(answer.get("p50_ms")),
                    p90_ms=_ms(answer.get("p90_ms")), p99_ms=_ms(answer.get("p99_ms")), max_ms=_ms(answer.get("max_ms")),
                    concurrency=concurrency, requests=requests, keepalive=keepalive)


__all__ = ["GeneratorLost", "LocustRun", "Swarm", "SwarmError", "locust_result"]
