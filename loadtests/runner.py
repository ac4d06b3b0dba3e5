"""The harness loop: start the service, measure each case with ab, record it at once.

For each case: measure W with one client, predict throughput with Little's law, size the
run so it lasts about ``measure_seconds``, warm up, then run ab while a side client probes
/ping. Cases that use a connection pool get a fresh server per driver, so one driver's idle
connections never crowd the next one out of a shared Postgres.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from app.settings import Settings
from loadtests.ab import AbError, run_ab
from loadtests.environment import cpu_seconds
from loadtests.findings import FINDINGS, Finding
from loadtests.model import Prediction, ServerShape, efficiency, predict
from loadtests.probe import PingProbe, Uncontended, measure_uncontended
from loadtests.profiles import Case, Profile
from loadtests.results import RunFolder
from loadtests.server import ServiceProcess, tail


class ServiceDied(RuntimeError):
    """The service stopped answering mid-run; the message names the case and the log's tail."""


@dataclass(frozen=True)
class Job:
    case: Case
    concurrency: int
    sweep: bool = False
    for_finding: str | None = None

    @property
    def group(self) -> str:
        """Jobs of one group share a server: one per pooled driver, one for everything else."""
        driver = self.case.scenario.driver
        return driver.name if driver.pooled else "local"


@dataclass
class Served:
    """A service being measured: where it is, its pid if we started it, and its /config."""

    url: str
    pid: int | None
    config: dict[str, Any]
    index: int
    process: ServiceProcess | None = None
    uncontended: dict[str, Uncontended] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        if self.process is not None:
            return self.process.alive
        try:
            return httpx.get(f"{self.url}/ping", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


def finding_jobs(jobs: list[Job], findings: tuple[Finding, ...] = FINDINGS) -> list[Job]:
    """Extra measurements the findings ask for at their own concurrency, for cases already planned."""
    planned = {(job.case.key, job.concurrency) for job in jobs}
    cases = {job.case.key: job.case for job in jobs if not job.sweep}
    extra = []
    for finding in findings:
        if finding.concurrency and finding.numerator in cases and finding.denominator in cases:
            for key in (finding.numerator, finding.denominator):
                if (key, finding.concurrency) not in planned:
                    planned.add((key, finding.concurrency))
                    extra.append(Job(cases[key], finding.concurrency, for_finding=finding.id))
    return extra


def server_settings(base: Settings, profile: Profile) -> Settings:
    """``base`` with the profile's threadpool, pools and bounds."""
    return base.model_copy(update={
        "threadpool_tokens": profile.threadpool_tokens,
        "pool_max": profile.pool_max,
        "pool_min": 1,
        "acquire_timeout": profile.acquire_timeout,
        "max_wait_seconds": max(base.max_wait_seconds, profile.seconds),
        "port": 0,
    })


def fetch_config(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/config", timeout=10)
    response.raise_for_status()
    return response.json()


def requests_for(profile: Profile, rate: float, concurrency: int, override: int | None) -> int:
    """Enough requests to last about ``measure_seconds`` at ``rate`` (the warm-up's), never fewer than c."""
    if override or profile.fixed_requests:
        return max(override or profile.fixed_requests or 0, concurrency)
    sized = round(rate * profile.measure_seconds)
    return max(concurrency, profile.min_requests, min(sized, profile.max_requests))


class Harness:
    """Runs ``jobs`` and appends one record per job to the run folder."""

    def __init__(self, profile: Profile, jobs: list[Job], folder: RunFolder, console: Console, *,
                 settings: Settings, target: str | None = None, keepalive: bool = False, requests: int | None = None) -> None:
        self.profile = profile
        self.jobs = jobs
        self.folder = folder
        self.console = console
        self.settings = settings
        self.target = target
        self.keepalive = keepalive
        self.requests = requests
        self.measured = 0

    def groups(self) -> list[tuple[str, list[Job]]]:
        if self.target:
            return [("target", self.jobs)]
        grouped: dict[str, list[Job]] = {}
        for job in self.jobs:
            grouped.setdefault(job.group, []).append(job)
        return list(grouped.items())

    @contextmanager
    def serve(self, group: str) -> Iterator[Served]:
        if self.target:
            config = fetch_config(self.target)
            self._warn_if_shaped_differently(config)
            yield Served(self.target, None, config, self.folder.add_server(config))
            return
        process = ServiceProcess(self.settings, self.folder.log_path(group))
        with process:
            config = fetch_config(process.url)
            yield Served(process.url, process.pid, config, self.folder.add_server(config), process)

    def _warn_if_shaped_differently(self, config: dict[str, Any]) -> None:
        """A running target keeps its own threadpool and pools; the model uses them, but the
        profile's findings assume its own shape, so say when they differ."""
        shape = ServerShape.from_config(config)
        pools = set(shape.pool_max.values())
        if shape.threadpool_tokens != self.profile.threadpool_tokens or pools != {self.profile.pool_max}:
            self.console.print(
                f"[yellow]note:[/yellow] the target runs {shape.threadpool_tokens} threadpool tokens and pools of "
                f"{', '.join(map(str, sorted(pools)))}; profile {self.profile.name} assumes {self.profile.threadpool_tokens} "
                f"and {self.profile.pool_max}. Predictions use the target's; findings may judge a different setup."
            )

    def run(self) -> None:
        """Measure every job; raises ServiceDied, ServerError or KeyboardInterrupt, keeping what was recorded."""
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("starting", total=len(self.jobs))
            for group, jobs in self.groups():
                progress.update(task, description=f"[dim]server for {group}[/dim]")
                with self.serve(group) as served:
                    for job in jobs:
                        progress.update(task, description=escape(f"{job.case.key} c={job.concurrency}"))
                        record = self.measure(job, served)
                        self.folder.append(record)
                        self.measured += 1
                        progress.console.print(summary_line(record))
                        progress.advance(task)
                        troubled = record["error"] or (record["ab"] and record["ab"]["failed"])
                        if troubled and not served.alive:
                            log = (tail(served.process.log_path) or "(empty)") if served.process else "(not ours: no log)"
                            raise ServiceDied(f"the service stopped answering during {job.case.key}; its log ends:\n{log}")

    def _uncontended(self, job: Job, served: Served, url: str) -> Uncontended:
        """W, measured once per case and server (sweeps reuse it)."""
        key = job.case.key
        if key not in served.uncontended:
            served.uncontended[key] = measure_uncontended(url, keepalive=self.keepalive)
        return served.uncontended[key]

    def measure(self, job: Job, served: Served) -> dict[str, Any]:
        shape = ServerShape.from_config(served.config)
        url = served.url + job.case.path()
        record: dict[str, Any] = {
            **job.case.to_dict(), "sweep": job.sweep, "for_finding": job.for_finding, "concurrency": job.concurrency,
            "keepalive": self.keepalive,
            "server": served.index, "threadpool_tokens": shape.threadpool_tokens,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "requests": None, "uncontended_ms": None, "cpu_ms_per_request": None, "ab": None, "model": None,
            "efficiency": None, "ping": None, "cpu_utilisation": None, "duration_s": None, "error": None,
        }
        started = time.monotonic()
        try:
            single = self._uncontended(job, served, url)
            if single.status != 200:
                record["error"] = f"answered {single.status} to a single client: {single.body[:200]}"
                return record
            prediction = predict(job.case.scenario, job.concurrency, single.latency_s, shape)
            record.update(uncontended_ms=single.latency_s * 1000, model=prediction.to_dict())
            # Sized by what the warm-up achieved, not by the prediction: a CPU-bound case can fall
            # far short of Little's law, and a run sized by the law would then last minutes.
            rate = min(prediction.rps, self._warm_up(url, prediction, job.concurrency) or prediction.rps)
            requests = requests_for(self.profile, rate, job.concurrency, self.requests)
            record["requests"] = requests
            # ab's -s fires only when no socket moves; a queue of c requests can legitimately take c/X.
            expected_s = requests / rate
            timeout_s = max(30.0, min(3600.0, 2 * job.concurrency / rate))
            cpu_before, wall_before = (cpu_seconds(served.pid) if served.pid else None), time.monotonic()
            with PingProbe(served.url, self.profile.ping_interval) as probe:
                result = run_ab(url, requests, job.concurrency, keepalive=self.keepalive, timeout_s=timeout_s,
                                time_limit_s=max(60.0, 4 * expected_s + timeout_s))
            wall = time.monotonic() - wall_before
            cpu_after = cpu_seconds(served.pid) if served.pid else None
            record.update(ab=result.to_dict(), ping=probe.summary(),
                          efficiency=efficiency(result.requests_per_second, prediction))
            if cpu_before is not None and cpu_after is not None and result.complete:
                # The utilisation law: a server at ~100% of a core per worker is CPU-bound, whatever Little says.
                record["cpu_utilisation"] = (cpu_after - cpu_before) / wall
                record["cpu_ms_per_request"] = (cpu_after - cpu_before) * 1000 / result.complete
        except (AbError, httpx.HTTPError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            record["duration_s"] = round(time.monotonic() - started, 3)
        return record

    def _warm_up(self, url: str, prediction: Prediction, concurrency: int) -> float | None:
        """Two rounds at the concurrency the server can actually serve: opens pools and threads
        without queueing (an async-blocking route serves one at a time, so it warms with one client).
        Returns the rate it reached, if every request succeeded."""
        clients = max(1, min(concurrency, math.ceil(prediction.capacity)))
        expected_s = 2 * clients / prediction.rps
        warm = run_ab(url, 2 * clients, clients, keepalive=self.keepalive, timeout_s=30,
                      time_limit_s=max(60.0, 4 * expected_s))
        ok = warm.failed == 0 and warm.non_2xx == 0 and warm.requests_per_second > 0
        return warm.requests_per_second if ok else None


def summary_line(record: dict[str, Any]) -> str:
    """One console line per measurement (Rich markup; the case key's [file] is escaped)."""
    head = escape(f"{record['case']:<44}") + f" c={record['concurrency']:<4}"
    if record["error"]:
        return f"{head} [red]error[/red]: {escape(record['error'][:160])}"
    ab, model, ping = record["ab"], record["model"], record["ping"] or {}
    bad = ab["failed"] + ab["non_2xx"]
    eff = f"{record['efficiency']:.0%}" if record["efficiency"] else "-"
    p90 = f"{ping['p90_ms']:.1f}" if ping.get("p90_ms") is not None else "-"
    failures = f" [red]{bad} failed/non-2xx[/red]" if bad else ""
    return (f"{head} n={ab['requests']:<6} {ab['requests_per_second']:>8.1f} rps  predicted {model['rps']:>8.1f} "
            f"({model['bound']}) eff {eff:>5}  /ping p90 {p90} ms{failures}")
