"""The harness loop: rounds of cases, each measured with ab and recorded at once.

A run is ``repeat`` rounds. A round measures every case once, on fresh servers: one per
pooled driver (so one driver's idle connections never crowd the next one out of a shared
Postgres) and one for everything else. Odd rounds go through the servers and their cases in
reverse (A B, then B A), so slow drift on a shared machine hits both sides of a finding
alike, and the findings pair their two cases round by round. When a required finding is
still inconclusive after the rounds, its two cases get more rounds (at the checkpoints in
``CHECKPOINTS``, up to the profile's ``max_repeat``). Sweep points follow the rounds.

Per measurement: W with one client (once per case), Little's law's prediction, a warm-up,
then ab sized to last about ``measure_seconds`` while an open-loop probe sends /ping.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from app.catalogue import Kind
from app.settings import Settings
from db.server_stats import ServerStats
from loadtests.ab import AbError, run_ab
from loadtests.errors import HarnessError
from loadtests.findings import FINDINGS, INTERLEAVED, Finding, Verdict, evaluate_all, scenario_of
from loadtests.interleave import measure_interleaved
from loadtests.model import Prediction, ServerShape, capacity, efficiency, predict
from loadtests.probe import PingProbe, Uncontended, measure_uncontended
from loadtests.profiles import Case, Profile
from loadtests.results import Record, RunFolder, ping_count, successful_rps
from loadtests.server import ServiceProcess, tail
from loadtests.stats import median
from loadtests.work import CpuMeter, CpuPerRequest, WirePerRequest, count_work, open_server_stats

#: Rounds an inconclusive required finding grows to, one checkpoint at a time.
CHECKPOINTS = (3, 5, 8, 10)
#: /ping probes a measurement lasts for at least (findings need MIN_PING_SAMPLES of them).
PROBES_PER_SAMPLE = 30
#: How long W is measured, one client at a time (once per case).
UNCONTENDED_S = 0.3
#: Seconds to start a server and open its pools, for the ETA.
SERVER_START_S = 1.5
#: The warm-up also calibrates CPU per request: it lasts about this long, within these request counts.
WARM_UP_S, WARM_UP_MAX = 0.15, 200


class ServiceDied(HarnessError):
    """The service stopped answering mid-run; the message names the case and the log's tail."""


@dataclass(frozen=True)
class Job:
    case: Case
    concurrency: int
    round: int = 0
    sweep: bool = False
    for_finding: str | None = None
    #: Round-trip time the wire proxy adds between the service and Postgres (0: direct).
    rtt_ms: float = 0.0
    #: A measurement beside the main ones (another RTT level, PgBouncer), which findings do not judge.
    variant: bool = False
    #: How the service reaches Postgres: ``direct``, or ``pgbouncer`` (transaction pooling in between).
    via: str = "direct"
    #: uvicorn workers of the job's server, when it differs from the profile's (the threadpool and
    #: pools are then split across them, so the server's total capacity stays the profile's).
    workers: int | None = None

    @property
    def group(self) -> str:
        """Jobs of one group share a server: one per pooled driver, RTT and path, one for everything else.

        An async driver's ``-defaults`` twin shares its driver's server (two pools of the profile's
        size fit a shared Postgres, as a sync driver and its threadpool twin do); a sync one has its own.
        """
        driver = self.case.scenario.driver
        if not driver.pooled:
            return "local"
        name = driver.defaults_of if driver.defaults_of and driver.kind is Kind.ASYNC else driver.name
        return (name + (f"@{self.rtt_ms:g}ms" if self.rtt_ms else "") + ("+pgbouncer" if self.via == "pgbouncer" else "")
                + (f"x{self.workers}workers" if self.workers else ""))

    def again(self, round: int) -> Job:
        return dataclasses.replace(self, round=round)


@dataclass
class Served:
    """A service being measured: where it is, its pid if we started it, and its /config."""

    url: str
    pid: int | None
    config: dict[str, Any]
    index: int
    process: ServiceProcess | None = None
    #: Processes between the service and Postgres (``proxy``, ``pgbouncer``) whose CPU counts, by name.
    middle: dict[str, int] = field(default_factory=dict)
    pgbouncer: Any = None  # db.pgbouncer.PgBouncerProcess, for its SHOW POOLS

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


def rounds(jobs: list[Job], first: int, last: int) -> list[list[Job]]:
    """``jobs`` once per round ``first``..``last`` - 1, each round split by server group, odd rounds reversed."""
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.group, []).append(job)
    order = list(grouped.values())
    batches = []
    for number in range(first, last):
        reverse = number % 2 == 1
        for group in reversed(order) if reverse else order:
            batch = [job.again(number) for job in group]
            batches.append(batch[::-1] if reverse else batch)
    return batches


def jobs_of(findings: list[Finding], jobs: list[Job]) -> list[Job]:
    """The planned jobs a finding judges: its two cases at its concurrency (the profile's by default)."""
    wanted = {(case, f.concurrency) for f in findings for case in (f.numerator, f.denominator)}
    return [job for job in jobs if not job.sweep and (job.case.key, job.for_finding and job.concurrency) in wanted]


def split_across_workers(settings: Settings, workers: int) -> Settings:
    """``settings`` with ``workers`` uvicorn workers sharing the same total threadpool and pools."""
    per_worker = settings.workers / workers
    return settings.model_copy(update={
        "workers": workers,
        "threadpool_tokens": max(1, round(settings.threadpool_tokens * per_worker)),
        "pool_max": max(1, round(settings.pool_max * per_worker)),
    })


def server_settings(base: Settings, profile: Profile) -> Settings:
    """``base`` with the profile's threadpool, pools, workers and bounds."""
    return base.model_copy(update={
        "threadpool_tokens": profile.threadpool_tokens,
        "pool_max": profile.pool_max,
        "pool_min": 0,  # a server opens only the pools its group uses (on first use: the warm-up)
        "workers": profile.workers,
        "acquire_timeout": profile.acquire_timeout,
        "max_wait_seconds": max(base.max_wait_seconds, profile.seconds),
        "port": 0,
    })


def service_pid(config: dict[str, Any]) -> int | None:
    """The pid of a running target whose CPU this harness can read: /config's pid, when it names an iobench
    service visible here (a shared PID namespace in compose), or its uvicorn supervisor's with several workers."""
    try:
        process = psutil.Process(int(config["pid"]))
        if process.pid == os.getpid() or not _is_service(process):
            return None
        parent = process.parent()
        return parent.pid if parent is not None and _is_service(parent) else process.pid
    except (KeyError, TypeError, ValueError, psutil.Error):
        return None


def _is_service(process: psutil.Process) -> bool:
    command = " ".join(process.cmdline())
    return "uvicorn" in command or "app.main" in command or " app serve" in command or "iobench serve" in command


def pgbouncer_pools(bouncer: Any) -> dict[str, Any] | None:
    """PgBouncer's server connections after a run (SHOW POOLS): what it saved in connections."""
    try:
        pools = bouncer.show("POOLS")
    except Exception as exc:  # noqa: BLE001 - PgBouncerError or a dead admin console: the run's result stands
        return {"error": str(exc)}
    servers = sum(int(pool.get(key) or 0) for pool in pools for key in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
    return {"server_connections": servers, "pool_size": bouncer.pool_size,
            "clients": sum(int(pool.get("cl_active") or 0) + int(pool.get("cl_waiting") or 0) for pool in pools)}


def fetch_config(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/config", timeout=10)
    response.raise_for_status()
    config: dict[str, Any] = response.json()
    return config


def requests_for(profile: Profile, rate: float, concurrency: int, override: int | None) -> int:
    """Enough requests to last about ``measure_seconds`` at ``rate`` (the warm-up's), never fewer than c."""
    if override or profile.fixed_requests:
        return max(override or profile.fixed_requests or 0, concurrency)
    # Long enough for the /ping probe to take the samples a /ping finding needs, whatever measure_seconds says.
    sized = round(rate * max(profile.measure_seconds, PROBES_PER_SAMPLE * profile.ping_interval))
    return max(concurrency, profile.min_requests, min(sized, profile.max_requests))


class Estimates:
    """Expected seconds per job, for the ETA: what the case took last time, else Little's law on a guessed W."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.shape = ServerShape.declared(profile.threadpool_tokens, profile.pool_max)
        self.taken: dict[tuple[str, int], float] = {}

    def __call__(self, job: Job) -> float:
        if (known := self.taken.get((job.case.key, job.concurrency))) is not None:
            return known
        waits = "seconds" in job.case.scenario.workload.parameters
        w = 2 * self.profile.seconds + 0.005 if waits else 0.01
        rate = capacity(job.case.scenario, job.concurrency, self.shape) / w
        requests = max(job.concurrency, self.profile.min_requests, round(rate * self.profile.measure_seconds))
        return max(0.5, 3 * w) + 2 * min(job.concurrency, rate * w) / rate + requests / rate

    def record(self, job: Job, seconds: float) -> None:
        self.taken[(job.case.key, job.concurrency)] = seconds


@dataclass
class Harness:
    """Runs the plan and appends one record per measurement to the run folder."""

    profile: Profile
    jobs: list[Job]
    folder: RunFolder
    console: Console
    settings: Settings
    target: str | None = None
    keepalive: bool = False
    requests: int | None = None
    #: Judges the findings on what was measured so far (the run's findings and declared shape).
    judge: Callable[[list[Record]], list[Verdict]] = field(default=lambda records: evaluate_all(records, {}))
    #: Count each database case's wire work through the wire proxy before the rounds (needs a TCP database URL).
    count_work: bool = True
    records: list[Record] = field(default_factory=list)
    uncontended: dict[str, Uncontended] = field(default_factory=dict)
    wire: dict[str, WirePerRequest] = field(default_factory=dict)
    #: The Postgres backends' monitor (their CPU), for a database this harness prepared.
    stats: ServerStats | None = None

    @property
    def measured(self) -> int:
        return len(self.records)

    @contextmanager
    def serve(self, job: Job) -> Iterator[Served]:
        """A server for ``job``'s group: the target, or one started here (behind the wire proxy for an RTT)."""
        if self.target:
            config = fetch_config(self.target)
            yield Served(self.target, service_pid(config), config, self.folder.add_server(config))
            return
        with ExitStack() as stack:
            settings, middle, bouncer = self.settings, {}, None
            if job.workers and job.workers != settings.workers:
                settings = split_across_workers(settings, job.workers)
            pooled = job.case.scenario.driver.pooled
            if job.via == "pgbouncer" and pooled:
                from db.pgbouncer import PgBouncerProcess

                assert settings.database_url is not None
                bouncer = stack.enter_context(PgBouncerProcess(
                    settings.database_url, pool_size=self.profile.pgbouncer_pool_size,
                    statement_timeout_ms=settings.statement_timeout_ms, query_wait_timeout=settings.acquire_timeout,
                    log_path=self.folder.log_path(f"pgbouncer-{job.group}")))
                # Every driver at its documented PgBouncer setting: the compatibility table shows the defaults.
                settings = settings.model_copy(update={"database_url": bouncer.url, "prepared_statements": False})
                middle["pgbouncer"] = bouncer.pid
            if job.rtt_ms and pooled:
                from db.wire_proxy import ProxyProcess

                assert settings.database_url is not None
                proxy = stack.enter_context(ProxyProcess(settings.database_url, job.rtt_ms,
                                                         log_path=self.folder.log_path(f"proxy-{job.group}")))
                settings = settings.model_copy(update={"database_url": proxy.url})
                middle["proxy"] = proxy.pid
            process = stack.enter_context(ServiceProcess(settings, self.folder.log_path(job.group)))
            config = fetch_config(process.url)
            yield Served(process.url, process.pid, config, self.folder.add_server(config), process,
                         {name: pid for name, pid in middle.items() if pid}, bouncer)

    def run(self) -> None:
        """Measure the plan; raises ServiceDied, ServerError or KeyboardInterrupt, keeping what was recorded."""
        main = [job for job in self.jobs if not job.sweep]
        sweeps = [job for job in self.jobs if job.sweep]
        plan = rounds(main, 0, self.profile.repeat) + rounds(sweeps, 0, self.profile.sweep_repeat)
        estimate = Estimates(self.profile)
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]} measured"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        counting = self._counting_groups(main)
        if not self.target:
            self.stats = open_server_stats(self.settings.database_url)
        try:
            self._run(plan, main, counting, estimate, columns)
        finally:
            if self.stats is not None:
                self.stats.close()

    def _run(self, plan: list[list[Job]], main: list[Job], counting: dict[str, list[Job]], estimate: Estimates,
             columns: tuple[Any, ...]) -> None:
        with Progress(*columns, console=self.console, transient=False) as progress:
            total = sum(SERVER_START_S + sum(map(estimate, batch)) for batch in plan)
            total += sum(2 * SERVER_START_S + 0.1 * len(jobs) for jobs in counting.values())
            task = progress.add_task("starting", total=total, done=0)
            for group, jobs in counting.items():
                progress.update(task, description=f"[dim]counting wire work: {group}[/dim]")
                self._count(group, jobs)
                progress.advance(task, 2 * SERVER_START_S + 0.1 * len(jobs))
            self._batches(plan, progress, task, estimate)
            done_rounds = self.profile.repeat
            for checkpoint in (c for c in CHECKPOINTS if done_rounds < c <= self.profile.max_repeat):
                unsettled = [v.finding for v in self.judge(self.records) if v.finding.required and v.status == "inconclusive"]
                if not unsettled:
                    break
                extra = rounds(jobs_of(unsettled, main), done_rounds, checkpoint)
                if not extra:
                    break
                names = ", ".join(f.id for f in unsettled)
                progress.console.print(f"[yellow]inconclusive:[/yellow] {names}; measuring rounds {done_rounds + 1}-{checkpoint}")
                progress.update(task, total=(progress.tasks[task].total or 0)
                                + sum(SERVER_START_S + sum(map(estimate, batch)) for batch in extra))
                self._batches(extra, progress, task, estimate)
                done_rounds = checkpoint

    def _counting_groups(self, jobs: list[Job]) -> dict[str, list[Job]]:
        """The database cases whose wire work gets counted (each case key once), all on one server: counting
        is one client at a time, so each driver opens a single connection and they all fit at once."""
        if not self.count_work or self.target or not self.settings.database_url:
            return {}
        cases: dict[str, Job] = {}
        for job in jobs:
            if job.via == "direct" and any(driver.pooled for driver in job.case.scenario.drivers):
                cases.setdefault(job.case.key, job)
        return {"database cases": list(cases.values())} if cases else {}

    def _count(self, group: str, jobs: list[Job]) -> None:
        """Each case's round trips, statements, Parses and sessions per request, through the wire proxy."""
        from db.wire_proxy import ProxyError, ProxyProcess

        assert self.settings.database_url is not None
        try:
            with ProxyProcess(self.settings.database_url, 0.0, log_path=self.folder.log_path("proxy-count")) as proxy:
                settings = self.settings.model_copy(update={"database_url": proxy.url})
                with ServiceProcess(settings, self.folder.log_path("count")) as service:
                    for job in jobs:
                        if (found := count_work(service.url + job.case.path(), proxy)) is not None:
                            self.wire[job.case.key] = found
        except (ProxyError, ValueError, httpx.HTTPError) as exc:
            self.console.print(f"[yellow]note:[/yellow] wire work of {group} not counted: {escape(str(exc))}")

    def _batches(self, batches: list[list[Job]], progress: Progress, task: TaskID, estimate: Estimates) -> None:
        for batch in batches:
            progress.update(task, description=f"[dim]round {batch[0].round + 1}: server for {batch[0].group}[/dim]")
            with self.serve(batch[0]) as served:
                progress.advance(task, SERVER_START_S)
                for job in batch:
                    progress.update(task, description=escape(f"r{job.round + 1} {job.case.key} c={job.concurrency}"))
                    expected = estimate(job)
                    record = self.measure(job, served)
                    self.folder.append(record)
                    self.records.append(record)
                    estimate.record(job, record.get("duration_s") or expected)
                    progress.update(task, advance=expected, done=self.measured)
                    progress.console.print(summary_line(record))
                    troubled = record.get("error") or (record.get("ab") or {}).get("failed")
                    if troubled and not served.alive:
                        log = (tail(served.process.log_path) or "(empty)") if served.process else "(not ours: no log)"
                        raise ServiceDied(f"the service stopped answering during {job.case.key}; its log ends:\n{log}")

    def _uncontended(self, job: Job, url: str) -> Uncontended:
        """W, measured once per case (later rounds and sweeps reuse it)."""
        key = job.case.key
        if key not in self.uncontended:
            self.uncontended[key] = measure_uncontended(url, keepalive=self.keepalive, min_seconds=UNCONTENDED_S)
        return self.uncontended[key]

    def measure(self, job: Job, served: Served) -> Record:
        shape = ServerShape.from_config(served.config)
        url = served.url + job.case.path()
        record: Record = {
            **job.case.to_dict(),  # type: ignore[typeddict-item]  # the scenario's fields, as Record declares them
            "round": job.round, "sweep": job.sweep, "for_finding": job.for_finding, "concurrency": job.concurrency,
            "rtt_ms": job.rtt_ms, "variant": job.variant, "via": job.via, "workers": shape.workers,
            "keepalive": self.keepalive, "server": served.index, "threadpool_tokens": shape.threadpool_tokens,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "requests": None, "uncontended_ms": None, "server_ms": None, "loop_cpu_ms": None, "ab": None, "model": None,
            "efficiency": None, "ping": None, "cpu": None, "calibration_cpu": None, "cpu_utilisation": None,
            "wire": None, "interleaved": None, "duration_s": None, "error": None,
        }
        started = time.monotonic()
        try:
            single = self._uncontended(job, url)
            if single.status != 200:
                record["error"] = f"answered {single.status} to a single client: {single.body[:200]}"
                return record
            first = predict(job.case.scenario, job.concurrency, single.latency_s, shape, hold_s=single.server_s)
            warm, calibration = self._warm_up(url, first, job.concurrency, served)
            prediction = predict(job.case.scenario, job.concurrency, single.latency_s, shape, hold_s=single.server_s,
                                 cpu=calibration, loop_cpu_s=single.loop_cpu_s)
            record["uncontended_ms"] = single.latency_s * 1000
            record["model"] = prediction.to_dict()
            record["server_ms"] = single.server_s * 1000 if single.server_s else None
            record["loop_cpu_ms"] = single.loop_cpu_s * 1000 if single.loop_cpu_s is not None else None
            record["calibration_cpu"] = calibration.to_dict() if calibration else None
            record["wire"] = self.wire.get(job.case.key) if job.via == "direct" else None
            # Sized by what earlier rounds measured, else by the warm-up, never by the prediction: a
            # CPU-bound case can fall far short of Little's law, and a run sized by it would last minutes.
            measured_before = median([r for rec in self.records if rec["case"] == job.case.key
                                      and rec.get("concurrency") == job.concurrency and (r := successful_rps(rec))])
            rate = measured_before or min(prediction.rps, warm or prediction.rps)
            requests = requests_for(self.profile, rate, job.concurrency, self.requests)
            prediction = prediction.for_run(requests)
            record["requests"] = requests
            record["model"] = prediction.to_dict()
            # ab's -s fires only when no socket moves; a queue of c requests can legitimately take c/X.
            expected_s = requests / rate
            timeout_s = max(30.0, min(3600.0, 2 * job.concurrency / rate))
            wall_before = time.monotonic()
            with PingProbe(served.url, self.profile.ping_interval) as probe, \
                    CpuMeter(served.pid, self.stats, served.middle) as meter:
                result = run_ab(url, requests, job.concurrency, keepalive=self.keepalive, timeout_s=timeout_s,
                                time_limit_s=max(60.0, 4 * expected_s + timeout_s))
            wall = time.monotonic() - wall_before
            record["ab"] = result.to_dict()
            record["ping"] = probe.summary()
            record["efficiency"] = efficiency(successful_rps(record), prediction)
            if served.pgbouncer is not None:
                record["pgbouncer"] = pgbouncer_pools(served.pgbouncer)
            if (cpu := meter.per_request(result.successful)) is not None:
                record["cpu"] = cpu.to_dict()
                if cpu.service_s is not None:
                    # The utilisation law: a server at ~100% of a core per worker is CPU-bound, whatever Little says.
                    record["cpu_utilisation"] = cpu.service_s * result.successful / wall
            if (against := self._interleaved_against(job)) is not None:
                record["interleaved"] = self._interleave(url, served, against)
        except (AbError, httpx.HTTPError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            record["duration_s"] = round(time.monotonic() - started, 3)
        return record

    def _interleaved_against(self, job: Job) -> str | None:
        """The case an instrument finding alternates this main measurement with, if the run measures it too."""
        if job.sweep or job.for_finding or job.variant or job.via != "direct":
            return None
        planned = {other.case.key for other in self.jobs}
        return next((f.denominator for f in FINDINGS if f.metric == INTERLEAVED and f.numerator == job.case.key
                     and f.denominator in planned), None)

    def _interleave(self, url: str, served: Served, against: str) -> dict[str, Any]:
        """Both routes in alternating slices on this server (``loadtests.interleave``), or why not."""
        other = scenario_of(against)
        if served.pid is None or other is None:
            return {"against": against, "error": "the service's process is not on this machine"}
        try:
            found = measure_interleaved(url, served.url + other.path, against, served.pid, keepalive=self.keepalive)
        except httpx.HTTPError as exc:
            return {"against": against, "error": f"{type(exc).__name__}: {exc}"}
        return found.to_dict() if found else {"against": against, "error": "this kernel keeps no schedstat"}

    def _warm_up(self, url: str, prediction: Prediction, concurrency: int,
                 served: Served) -> tuple[float | None, CpuPerRequest | None]:
        """At least two rounds at the concurrency the server can actually serve: opens pools and
        threads without queueing (an async-blocking route serves one at a time, so it warms with
        one client), and lasts about ``WARM_UP_S`` to calibrate the CPU each request costs.
        Returns the rate it reached and the CPU per request, if every request succeeded."""
        clients = max(1, min(concurrency, math.ceil(prediction.capacity)))
        requests = max(2 * clients, min(WARM_UP_MAX, round(prediction.rps * WARM_UP_S)))
        expected_s = requests / prediction.rps
        with CpuMeter(served.pid, self.stats, served.middle) as meter:
            warm = run_ab(url, requests, clients, keepalive=self.keepalive, timeout_s=30,
                          time_limit_s=max(60.0, 4 * expected_s))
        ok = warm.failed == 0 and warm.non_2xx == 0 and warm.successful_per_second > 0
        return (warm.successful_per_second, meter.per_request(warm.successful)) if ok else (None, None)


def summary_line(record: Record) -> str:
    """One console line per measurement (Rich markup; the case key's [file] is escaped)."""
    head = escape(f"r{record.get('round', 0) + 1} {record['case']:<44}") + f" c={record.get('concurrency'):<4}"
    if record.get("error"):
        return f"{head} [red]error[/red]: {escape(str(record['error'])[:160])}"
    ab, model, ping = record.get("ab") or {}, record.get("model") or {}, record.get("ping")
    bad = int(ab.get("failed") or 0) + int(ab.get("non_2xx") or 0)
    eff = f"{record['efficiency']:.0%}" if record.get("efficiency") else "-"
    p50_ms = ping.get("p50_ms") if ping else None
    p50 = f"{p50_ms:.1f}" if p50_ms is not None else "-"
    rps = successful_rps(record) or 0.0
    failures = f" [red]{bad} failed/non-2xx[/red]" if bad else ""
    return (f"{head} n={ab.get('requests'):<6} {rps:>8.1f} rps  predicted {model.get('rps', 0):>8.1f} "
            f"({model.get('bound')}) eff {eff:>5}  /ping p50 {p50} ms ({ping_count(record)}){failures}")
