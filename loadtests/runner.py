"""The harness loop: blocks of cases, calibrated, then measured in alternating rounds and recorded at once.

A run is a list of blocks (``plan.blocks``): each block is one server and a sequence of cases
in which every compared pair stands side by side. For each block the harness starts the
server, then:

1. **calibrates** every case, one client at a time, before and apart from the measured
   rounds: the uncontended latency W, the server's share S and the event loop's CPU within it
   (Server-Timing), and the CPU each request costs the service, Postgres and ab (nanosecond
   clocks). The model's prediction for a case comes from this phase alone;
2. measures ``repeat`` **rounds** of the sequence, odd rounds backwards: each sample a
   steady-state window of an ab run (``sample.steady_sample``) with an open-loop /ping probe;
3. measures the block's **sweep** points, one sample per concurrency, which the model
   calibrated at the profile's concurrency must predict (``heldout``).

When the profile allows more rounds than ``repeat``, required findings still inconclusive get
more rounds of their blocks at each checkpoint, every look judged at the Bonferroni level
(``stats.Looks``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from app.catalogue import Style
from app.settings import Settings
from db.server_stats import ServerStats
from loadtests.ab import AbError, AbRun
from loadtests.claims import PING_METRICS
from loadtests.errors import HarnessError
from loadtests.findings import FINDINGS, Finding, Verdict, evaluate_all, usable_value
from loadtests.generators import generator_count
from loadtests.locust_load import GeneratorLost, Swarm, SwarmError
from loadtests.model import Prediction, ServerShape, efficiency, predict
from loadtests.pairing import Value, compare
from loadtests.plan import Block, Job, Pair, sequence
from loadtests.probe import PingProbe, measure_uncontended
from loadtests.profiles import Profile
from loadtests.results import Record, RunFolder, ping_count, successful_rps
from loadtests.sample import CompletionSource, Sample, Window, steady_sample, whole_run
from loadtests.server import ServiceProcess, tail
from loadtests.stats import Looks, median
from loadtests.work import CpuMeter, CpuPerRequest, WirePerRequest, count_work, open_server_stats

#: How long W is measured, one client at a time (once per case and setup).
UNCONTENDED_S = 0.1
#: The calibration's own ab window at one client: the CPU each request costs, on nanosecond clocks.
CALIBRATION_WINDOW_S, CALIBRATION_COMPLETIONS = 0.2, 5
#: Windows of the ``threadpool`` style last this long at least (seen here: wait/threadpool/time's rate over
#: 0.8 s windows ranged 207-288 rps; over 2 s windows of one run, ±1-7%).
CONVOY_S = 2.0
#: How long the service's idle CPU is read, once per server (the calibration takes it out of one client's CPU).
IDLE_S = 0.2
#: A case's first sample on a new server warms up this much longer: its pools open then.
FIRST_WARM_S = 0.15
#: A block fills its pools before the rounds: each pooled driver's case is driven at the block's concurrency until
#: its pool stops opening connections (no new one for POOL_PLATEAU_S) or is full, for at most POOL_FILL_MAX_S.
#: psycopg_pool grows one connection at a time and only while clients wait (seen here: a pool of 30 still growing
#: in a case's first two rounds, 100-180 rps against 270-290 after); a steady state has its pool open.
POOL_FILL_MAX_S, POOL_PLATEAU_S, POOL_POLL_S = 5.0, 0.5, 0.05
#: S of the wait routes while their wire work is counted (``Harness._count``): round trips do not depend on it.
COUNT_SECONDS = "0.001"
#: Seconds to start a server and open its pools, for the ETA.
SERVER_START_S = 1.5
#: /ping probes a sample's window lasts for at least (findings need MIN_PING_SAMPLES of them).
PROBES_PER_SAMPLE = 50
#: Where many slots bind (threads, connections, clients), requests finish in bursts: a window spans at least
#: this many cycles of min(c, 2 x slots) requests (seen here: wait/sync/time's rate scatters by ±25% over 0.5 s
#: windows and ±3% over 1.5 s, around the same 146 rps that 3 s windows give).
WINDOW_CYCLES = 6


class ServiceDied(HarnessError):
    """The service stopped answering mid-run; the message names the case and the log's tail."""


@dataclass
class Served:
    """A service being measured: where it is, its pid if we started it, its /config, its completion log."""

    url: str
    pid: int | None
    config: dict[str, Any]
    index: int
    process: ServiceProcess | None = None
    #: Processes between the service and Postgres (``proxy``, ``pgbouncer``) whose CPU counts, by name.
    middle: dict[str, int] = field(default_factory=dict)
    pgbouncer: Any = None  # db.pgbouncer.PgBouncerProcess, for its SHOW POOLS
    log: CompletionSource | None = None
    #: /ping's own latency with one client, calibrated once per server (the /ping findings' model needs it).
    ping_ms: float | None = None
    #: The open-loop /ping probe, running through the block's rounds.
    probe: PingProbe | None = None
    #: The service's own CPU seconds per second with nothing to serve (timers, pool upkeep), for the calibration.
    idle_cpu: float | None = None

    @property
    def alive(self) -> bool:
        if self.process is not None:
            return self.process.alive
        try:
            return httpx.get(f"{self.url}/ping", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass(frozen=True)
class Calibration:
    """A case's demands, measured one client at a time on its block's server before the rounds."""

    latency_s: float
    server_s: float | None
    loop_cpu_s: float | None
    cpu: CpuPerRequest | None
    rps: float | None
    status: int = 200
    body: str = ""

    @property
    def cycle_s(self) -> float:
        """W as ab sees it: one client's cycle, 1 / its rate (the load comes from ab, not from the Python
        client that reads Server-Timing, whose own overhead would inflate W for a fast route)."""
        return 1 / self.rps if self.rps else self.latency_s

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_s * 1000, "server_ms": self.server_s * 1000 if self.server_s else None,
                "loop_cpu_ms": self.loop_cpu_s * 1000 if self.loop_cpu_s is not None else None,
                "cpu": self.cpu.to_dict() if self.cpu else None, "rps": self.rps}


def finding_jobs(jobs: list[Job], findings: tuple[Finding, ...]) -> list[Job]:
    """Extra measurements the findings ask for at their own concurrency, for cases already planned."""
    planned = {(job.case.key, job.concurrency) for job in jobs}
    cases = {job.case.key: job.case for job in jobs if not job.sweep}
    extra = []
    for finding in findings:
        if finding.concurrency and all(key in cases for key in finding.cases):
            for key in finding.cases:
                if (key, finding.concurrency) not in planned:
                    planned.add((key, finding.concurrency))
                    extra.append(Job(cases[key], finding.concurrency, for_finding=finding.id))
    return extra


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
        "pool_min": 0,  # a server opens only the pools its block uses (on first use: the calibration)
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


def completion_log(config: dict[str, Any]) -> CompletionSource | None:
    """The completion log of a served /config, when it names a folder this machine can read."""
    from app.completions import CompletionLog

    folder = config.get("completions_dir")
    if not folder or not Path(folder).is_dir():
        return None
    return CompletionLog(Path(folder))


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


def sample_seconds(profile: Profile, case: str | None = None, findings: tuple[Finding, ...] = FINDINGS) -> float:
    """How long a window lasts at least: the profile's, and for a case a /ping finding judges, long enough
    for the probe's samples."""
    pinged = case is None or any(f.metric in PING_METRICS and case in f.cases for f in findings)
    return max(profile.measure_seconds, PROBES_PER_SAMPLE * profile.ping_interval if pinged else 0.0)


class Estimates:
    """Expected seconds per sample, for the ETA: what the case took last time, else a guess from its waits."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.taken: dict[tuple[str, int], float] = {}

    def __call__(self, job: Job) -> float:
        if (known := self.taken.get((job.case.key, job.concurrency))) is not None:
            return known
        waits = "seconds" in job.case.scenario.workload.parameters
        latency = 2 * self.profile.seconds if waits else 0.005
        if self.profile.fixed_requests:
            return math.ceil(self.profile.fixed_requests / job.concurrency) * latency + latency
        return max(0.15, 3 * latency) + sample_seconds(self.profile) + 0.1

    def calibration(self, job: Job) -> float:
        waits = "seconds" in job.case.scenario.workload.parameters
        return UNCONTENDED_S + CALIBRATION_WINDOW_S + 0.25 + (6 * 2 * self.profile.seconds if waits else 0.0)

    def record(self, job: Job, seconds: float) -> None:
        self.taken[(job.case.key, job.concurrency)] = seconds


@dataclass
class Harness:
    """Runs the plan and appends one record per measurement to the run folder."""

    profile: Profile
    blocks: list[Block]
    pairs: list[Pair]
    folder: RunFolder
    console: Console
    settings: Settings
    target: str | None = None
    keepalive: bool = False
    #: Successful completions a sample's window waits for (``-n``); default: the profile's.
    requests: int | None = None
    #: Judges the findings on what was measured so far, at a confidence level (the run's findings and shape).
    judge: Callable[[list[Record], float], list[Verdict]] = field(
        default=lambda records, confidence: evaluate_all(records, {}, confidence=confidence))
    #: The claims the run judges (windows of a case a /ping claim reads last long enough for the probe).
    findings: tuple[Finding, ...] = FINDINGS
    #: Count each database case's wire work through the wire proxy before the rounds (needs a TCP database URL).
    count_work: bool = True
    records: list[Record] = field(default_factory=list)
    calibrations: dict[tuple[str, str, int], Calibration] = field(default_factory=dict)
    wire: dict[str, WirePerRequest] = field(default_factory=dict)
    #: The Postgres backends' monitor (their CPU), for a database this harness prepared.
    stats: ServerStats | None = None
    #: ab processes per sample, splitting c (``--generators``); None: enough for each to stay under 70% of a core.
    generators: int | None = 1
    #: ``--engine locust``: the Locust master and its workers, which then make every sample's load.
    swarm: Swarm | None = None
    #: A load generator lost mid-run: raised once its case is recorded.
    lost: HarnessError | None = None

    @property
    def measured(self) -> int:
        return len(self.records)

    @property
    def looks(self) -> Looks:
        return Looks.planned(self.profile.repeat, self.profile.max_repeat)

    @contextmanager
    def serve(self, job: Job) -> Iterator[Served]:
        """A server for ``job``'s setup: the target, or one started here (behind the wire proxy for an RTT,
        PgBouncer for ``via``), logging its completions to a fresh folder in memory."""
        if self.target:
            config = fetch_config(self.target)
            yield Served(self.target, service_pid(config), config, self.folder.add_server(config), log=completion_log(config))
            return
        with ExitStack() as stack:
            settings, middle, bouncer = self.settings, {}, None
            if job.workers and job.workers != settings.workers:
                settings = split_across_workers(settings, job.workers)
            pooled = any(driver.pooled for driver in job.case.scenario.drivers)
            if job.via == "pgbouncer" and pooled:
                from db.pgbouncer import PgBouncerProcess

                assert settings.database_url is not None
                bouncer = stack.enter_context(PgBouncerProcess(
                    settings.database_url, pool_size=self.profile.pgbouncer_pool_size,
                    statement_timeout_ms=settings.statement_timeout_ms, query_wait_timeout=settings.acquire_timeout,
                    log_path=self.folder.log_path(f"pgbouncer-{job.block}")))
                # Every driver at its documented PgBouncer setting: the compatibility table shows the defaults.
                settings = settings.model_copy(update={"database_url": bouncer.url, "prepared_statements": False})
                middle["pgbouncer"] = bouncer.pid
            if job.rtt_ms and pooled:
                from db.wire_proxy import ProxyProcess

                assert settings.database_url is not None
                proxy = stack.enter_context(ProxyProcess(settings.database_url, job.rtt_ms,
                                                         log_path=self.folder.log_path(f"proxy-{job.block}")))
                settings = settings.model_copy(update={"database_url": proxy.url, "db_rtt_ms": job.rtt_ms})
                middle["proxy"] = proxy.pid
            shared_memory = Path("/dev/shm")
            completions = Path(tempfile.mkdtemp(prefix="iobench-completions-",
                                                dir=shared_memory if shared_memory.is_dir() else None))
            stack.callback(shutil.rmtree, completions, True)
            settings = settings.model_copy(update={"completions_dir": completions})
            process = stack.enter_context(ServiceProcess(settings, self.folder.log_path(job.block.replace("/", "-"))))
            config = fetch_config(process.url)
            yield Served(process.url, process.pid, config, self.folder.add_server(config), process,
                         {name: pid for name, pid in middle.items() if pid}, bouncer, completion_log(config))

    def run(self) -> None:
        """Measure the plan; raises ServiceDied, ServerError or KeyboardInterrupt, keeping what was recorded."""
        estimate = Estimates(self.profile)
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]} measured"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        counting = self._counting_jobs()
        if not self.target:
            self.stats = open_server_stats(self.settings.database_url)
        try:
            with Progress(*columns, console=self.console, transient=False) as progress:
                total = sum(self._block_estimate(block, range(block.total_rounds), True, estimate) for block in self.blocks)
                total += 2 * SERVER_START_S + 0.1 * len(counting) if counting else 0.0
                task = progress.add_task("starting", total=total, done=0)
                if counting:
                    progress.update(task, description="[dim]counting wire work[/dim]")
                    self._count(counting)
                    progress.advance(task, 2 * SERVER_START_S + 0.1 * len(counting))
                for block in self.blocks:
                    self._block(block, range(block.total_rounds), block.sweeps, progress, task, estimate)
                self._extra_looks(progress, task, estimate)
        finally:
            if self.stats is not None:
                self.stats.close()

    def _block_estimate(self, block: Block, rounds: range, sweeps: bool, estimate: Estimates) -> float:
        return (SERVER_START_S + sum(map(estimate.calibration, block.jobs))
                + sum(estimate(job) for number in rounds for job in block.round(number))
                + (sum(map(estimate, block.sweeps)) if sweeps else 0.0))

    def _extra_looks(self, progress: Progress, task: TaskID, estimate: Estimates) -> None:
        """More rounds for the blocks of required findings still inconclusive, one checkpoint at a time: each such
        finding's pair is measured until it has the checkpoint's rounds (a pair narrowed past it waits for the next)."""
        looks = self.looks
        for checkpoint in looks.checkpoints[1:]:
            unsettled = [v for v in self.judge(self.records, looks.confidence)
                         if v.finding.required and v.status == "inconclusive" and v.rounds < checkpoint]
            if not unsettled:
                continue
            extra = []
            for block in self.blocks:
                at = {(job.case.key, job.concurrency): job for job in block.jobs if not job.variant}
                here = [(v.rounds, [at[(case, c)] for case in v.finding.cases]) for v in unsettled
                        for c in [v.finding.concurrency or self.profile.concurrency]
                        if all((case, c) in at for case in v.finding.cases)]
                if here:
                    edges = [(found[0], found[1]) for _, found in here if len(found) == 2]
                    start = self._next_round(block.name)
                    more = max(checkpoint - rounds for rounds, _ in here)
                    jobs = list(dict.fromkeys(job for _, found in here for job in found))
                    extra.append((Block(block.name, sequence(jobs, edges), rounds=start + more), range(start, start + more)))
            names = ", ".join(v.finding.id for v in unsettled)
            progress.console.print(f"[yellow]inconclusive:[/yellow] {names}; measuring up to {checkpoint} rounds "
                                   f"(every look judged at {looks.confidence:.1%}, Bonferroni over {len(looks.checkpoints)})")
            progress.update(task, total=(progress.tasks[task].total or 0)
                            + sum(self._block_estimate(block, rounds, False, estimate) for block, rounds in extra))
            for block, rounds in extra:
                self._block(block, rounds, [], progress, task, estimate)

    def _next_round(self, block: str) -> int:
        """The first round number ``block`` has not used: a later look's rounds never share a number with earlier ones."""
        return 1 + max((int(r.get("round", 0)) for r in self.records if r.get("block") == block and not r.get("sweep")),
                       default=-1)

    def _counting_jobs(self) -> list[Job]:
        """The database cases whose wire work gets counted (each case key once), all on one server: counting
        is one client at a time, so each driver opens a single connection and they all fit at once."""
        if not self.count_work or self.target or not self.settings.database_url:
            return []
        cases: dict[str, Job] = {}
        for block in self.blocks:
            for job in block.jobs:
                if job.via == "direct" and any(driver.pooled for driver in job.case.scenario.drivers):
                    cases.setdefault(job.case.key, job)
        return list(cases.values())

    def _count(self, jobs: list[Job]) -> None:
        """Each case's round trips, statements, Parses and sessions per request, through the wire proxy."""
        from db.wire_proxy import ProxyError, ProxyProcess

        assert self.settings.database_url is not None
        try:
            with ProxyProcess(self.settings.database_url, 0.0, log_path=self.folder.log_path("proxy-count")) as proxy:
                settings = self.settings.model_copy(update={"database_url": proxy.url})
                with ServiceProcess(settings, self.folder.log_path("count")) as service:
                    for job in jobs:
                        # A wait's length is a parameter of the same statements: counted at 1 ms, not S, it costs
                        # 13 requests x 2 x 1 ms instead of 2 x S each (16 s of the default profile's start).
                        case = job.case if "seconds" not in dict(job.case.query) else dataclasses.replace(
                            job.case, query=tuple((k, COUNT_SECONDS if k == "seconds" else v) for k, v in job.case.query))
                        if (found := count_work(service.url + case.path(), proxy)) is not None:
                            self.wire[job.case.key] = found
        except (ProxyError, ValueError, httpx.HTTPError) as exc:
            self.console.print(f"[yellow]note:[/yellow] wire work not counted: {escape(str(exc))}")

    def _block(self, block: Block, rounds: range, sweeps: list[Job], progress: Progress, task: TaskID,
               estimate: Estimates) -> None:
        first = (block.sequence or sweeps)[0]
        progress.update(task, description=escape(f"block {block.name}: starting its server"))
        with self.serve(first) as served, ExitStack() as stack:
            progress.advance(task, SERVER_START_S)
            try:
                served.ping_ms = measure_uncontended(f"{served.url}/ping", keepalive=self.keepalive,
                                                     min_seconds=UNCONTENDED_S).latency_s * 1000
            except httpx.HTTPError:
                served.ping_ms = None
            served.idle_cpu = self._idle_cpu(served)
            warmed: set[Job] = set()
            for job in dict.fromkeys([*block.jobs, *sweeps]):
                progress.update(task, description=escape(f"{block.name}: calibrating {job.case.key}"))
                self._calibrate(block.name, job, served)
                progress.advance(task, estimate.calibration(job))
            self._fill_pools(block, served)
            # /ping on its fixed schedule from here to the end of the block; each sample keeps its window's probes.
            served.probe = stack.enter_context(PingProbe(served.url, self.profile.ping_interval))
            for number in rounds:
                for position, job in enumerate(block.round(number)):
                    progress.update(task, description=escape(f"{block.name} r{number + 1} {job.label}"))
                    self._record(job, served, block.name, number, position, job not in warmed, progress, task, estimate)
                    warmed.add(job)
            self._narrow(block, served, rounds.stop, progress, task, estimate)
            for position, job in enumerate(sweeps):
                progress.update(task, description=escape(f"{block.name} sweep {job.label}"))
                self._record(job, served, block.name, 0, position, True, progress, task, estimate)

    def _narrow(self, block: Block, served: Served, done: int, progress: Progress, task: TaskID,
                estimate: Estimates) -> None:
        """More rounds, on the same server, of the block's pairs whose 95% interval is still wider than the profile's
        ``ranked_half_width``: its ranked pairs up to ``ranked_max_repeat`` rounds, its required findings' pairs up to
        ``required_max_repeat``; one round at a time, on the interval's width alone (see ``Profile``)."""
        metrics = {finding.id: finding.metric for finding in self.findings}
        rps: Value = successful_rps
        targets = [(a, b, rps, self.profile.ranked_max_repeat) for a, b in block.ranked_pairs]
        targets += [(a, b, usable_value(metrics[finding]), self.profile.required_max_repeat)
                    for a, b, finding in block.required_pairs if finding in metrics]
        for number in range(done, done + max((cap for *_, cap in targets), default=0)):
            wide = []
            for a, b, value, cap in targets:
                half_width, rounds = self._spread(block.name, a, b, value)
                if rounds < cap and half_width > self.profile.ranked_half_width:
                    wide.append((a, b))
            if not wide:
                return
            walk = sequence(list(dict.fromkeys(job for pair in wide for job in pair)), wide)
            walk = walk[::-1] if number % 2 else walk
            progress.update(task, total=(progress.tasks[task].total or 0) + sum(map(estimate, walk)))
            for position, job in enumerate(walk):
                progress.update(task, description=escape(f"{block.name} r{number + 1} (narrowing) {job.label}"))
                self._record(job, served, block.name, number, position, False, progress, task, estimate)

    def _spread(self, block: str, numerator: Job, denominator: Job, value: Value) -> tuple[float, int]:
        """The half-width on the log scale of numerator/denominator's paired interval in ``block`` so far, and
        over how many rounds (infinite over none)."""
        records = [r for r in self.records if r.get("block") == block and not r.get("sweep")
                   and r.get("concurrency") == numerator.concurrency]
        found = compare(records, numerator.case.key, denominator.case.key, value)
        return (found.interval.half_width, found.rounds) if found else (math.inf, 0)

    def _fill_pools(self, block: Block, served: Served) -> None:
        """Open each pooled driver's connections as its load will, before any sample counts: the rounds then
        measure the pool a running service has, not its growth. Records what each pool opened in run.json."""
        chosen: dict[str, Job] = {}
        for job in block.jobs:  # per driver, the case that holds the most connections at once: async first
            for driver in (d for d in job.case.scenario.drivers if d.pooled):
                best = chosen.get(driver.name)
                if best is None or (best.case.scenario.style != Style.ASYNC and job.case.scenario.style == Style.ASYNC):
                    chosen[driver.name] = job
        filled = {}
        for name, job in chosen.items():
            started = time.monotonic()
            opened = self._pool_open(served, name)
            if opened is None or opened[0] >= opened[1]:
                continue
            with AbRun(served.url + job.case.path(), 1_000_000, job.concurrency, keepalive=self.keepalive) as load:
                last, grew_at = opened[0], time.monotonic()
                while time.monotonic() - started < POOL_FILL_MAX_S and not load.finished:
                    time.sleep(POOL_POLL_S)
                    now = self._pool_open(served, name)
                    if now is None or now[0] >= now[1]:
                        break
                    if now[0] > last:
                        last, grew_at = now[0], time.monotonic()
                    elif time.monotonic() - grew_at >= POOL_PLATEAU_S:
                        break
                try:
                    load.stop()
                except AbError:
                    pass  # a fill that ab could not report on still opened what it opened
            after = self._pool_open(served, name)
            filled[name] = {"case": job.case.key, "open_before": opened[0], "open_after": after[0] if after else None,
                            "max": opened[1], "seconds": round(time.monotonic() - started, 3)}
        if filled:
            self.folder.run.setdefault("pool_fill", {})[block.name] = filled
            self.folder.write_run()

    @staticmethod
    def _pool_open(served: Served, driver: str) -> tuple[int, int] | None:
        """(connections open, pool max) of ``driver`` on the served /config, or None where it says neither."""
        try:
            pool = (fetch_config(served.url).get("pools") or {}).get(driver) or {}
        except httpx.HTTPError:
            return None
        if not isinstance(pool.get("open"), int) or not pool.get("max"):
            return None
        return int(pool["open"]), int(pool["max"])

    def _record(self, job: Job, served: Served, block: str, number: int, position: int, first: bool,
                progress: Progress, task: TaskID, estimate: Estimates) -> None:
        expected = estimate(job)
        record = self.measure(job, served, block, number, position, first)
        self.folder.append(record)
        self.records.append(record)
        estimate.record(job, record.get("duration_s") or expected)
        progress.update(task, advance=expected, done=self.measured)
        progress.console.print(summary_line(record))
        if self.lost is not None:  # recorded with its error; the run stops here, as for a dead service
            raise self.lost
        troubled = record.get("error") or (record.get("ab") or {}).get("failed")
        if troubled and not served.alive:
            log = (tail(served.process.log_path) or "(empty)") if served.process else "(not ours: no log)"
            raise ServiceDied(f"the service stopped answering during {job.case.key}; its log ends:\n{log}")

    def _idle_cpu(self, served: Served) -> float | None:
        """The service's CPU seconds per second while nothing is asked of it."""
        meter = CpuMeter(served.pid, None)
        before, started = meter.read(), time.monotonic()
        time.sleep(IDLE_S)
        after = meter.read()
        if before.service is None or after.service is None:
            return None
        return max(0.0, (after.service - before.service) / (time.monotonic() - started))

    def _calibrate(self, block: str, job: Job, served: Served) -> Calibration:
        """W, S and the loop's CPU (one client, Server-Timing), then the CPU per request at one client."""
        key = (job.setup, job.case.key, job.workers or 0)  # the same case on the same setup: the same demands
        if key in self.calibrations:
            return self.calibrations[key]
        url = served.url + job.case.path()
        try:
            single = measure_uncontended(url, keepalive=self.keepalive, min_seconds=UNCONTENDED_S)
        except httpx.HTTPError as exc:
            found = Calibration(math.nan, None, None, None, None, 0, f"{type(exc).__name__}: {exc}")
        else:
            if single.status != 200:
                found = Calibration(single.latency_s, None, None, None, None, single.status, single.body)
            else:
                meter = CpuMeter(served.pid, self.stats, served.middle)
                window = Window(max(0.05, 2 * single.latency_s), CALIBRATION_WINDOW_S, CALIBRATION_COMPLETIONS,
                                max(2.0, 10 * single.latency_s), max(0.02, single.latency_s))
                try:
                    one = steady_sample(url, 1, window, log=served.log, meter=meter,
                                        expected_rps=1 / max(single.latency_s, 1e-4), keepalive=self.keepalive)
                    cpu, rps = one.cpu, one.rps
                except AbError:
                    cpu, rps = None, None
                if cpu is not None and cpu.service_s is not None and served.idle_cpu is not None and rps:
                    # One client leaves the service idle most of the time; what it burns idle is not the request's.
                    cpu = dataclasses.replace(cpu, service_s=max(0.0, cpu.service_s - served.idle_cpu / rps))
                found = Calibration(single.latency_s, single.server_s, single.loop_cpu_s, cpu, rps)
        self.calibrations[key] = found
        return found

    def measure(self, job: Job, served: Served, block: str, number: int, position: int, first: bool = False) -> Record:
        shape = ServerShape.from_config(served.config)
        url = served.url + job.case.path()
        record: Record = {
            **job.case.to_dict(),  # type: ignore[typeddict-item]  # the scenario's fields, as Record declares them
            "block": block, "round": number, "position": position, "sweep": job.sweep, "for_finding": job.for_finding,
            "concurrency": job.concurrency, "rtt_ms": job.rtt_ms, "variant": job.variant, "via": job.via,
            "workers": shape.workers, "keepalive": self.keepalive, "server": served.index,
            "threadpool_tokens": shape.threadpool_tokens, "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "method": None, "requests": None, "uncontended_ms": None, "ping_uncontended_ms": None, "server_ms": None,
            "loop_cpu_ms": None,
            "engine": None, "generators": None,
            "steady": None, "warm_s": None, "window_s": None, "foreign_in_window": None, "ab": None, "model": None,
            "efficiency": None,
            "ping": None, "cpu": None, "calibration_cpu": None, "cpu_utilisation": None, "wire": None,
            "duration_s": None, "error": None,
        }
        started = time.monotonic()
        try:
            calibration = self._calibrate(block, job, served)
            if calibration.status != 200:
                record["error"] = f"answered {calibration.status} to a single client: {calibration.body[:200]}"
                return record
            # The prediction comes from the calibration alone, made before the sample.
            generators = self._generators(job, calibration, shape)
            prediction = predict(job.case.scenario, job.concurrency, calibration.cycle_s, shape,
                                 hold_s=calibration.server_s, cpu=calibration.cpu, loop_cpu_s=calibration.loop_cpu_s,
                                 generators=generators)
            record["engine"] = "locust" if self.swarm is not None else "ab"
            record["uncontended_ms"] = calibration.cycle_s * 1000
            record["ping_uncontended_ms"] = served.ping_ms
            record["server_ms"] = calibration.server_s * 1000 if calibration.server_s else None
            record["loop_cpu_ms"] = calibration.loop_cpu_s * 1000 if calibration.loop_cpu_s is not None else None
            record["calibration_cpu"] = calibration.cpu.to_dict() if calibration.cpu else None
            record["model"] = prediction.to_dict()
            record["wire"] = self.wire.get(job.case.key) if job.via == "direct" else None
            sample = self._sample(job, served, url, calibration, prediction, first, generators)
            record["generators"] = sample.generators.to_dict() if sample.generators else None
            record["method"] = "ab whole run" if sample.steady is None and self.profile.fixed_requests else (
                sample.steady.method if sample.steady else None)
            record["steady"] = sample.steady.to_dict() if sample.steady else None
            record["requests"] = sample.steady.completions if sample.steady else sample.ab.requests
            record["warm_s"], record["window_s"] = sample.warm_s, sample.window_s
            record["foreign_in_window"] = sample.foreign_in_window
            record["ab"] = sample.ab.to_dict()
            record["ping"] = sample.ping
            record["cpu"] = sample.cpu.to_dict() if sample.cpu else None
            record["cpu_utilisation"] = sample.utilisation
            record["efficiency"] = efficiency(successful_rps(record), prediction)
            if sample.steady is None and not self.profile.fixed_requests:
                record["error"] = "no steady window: too few successful completions after the warm-up"
            if served.pgbouncer is not None:
                record["pgbouncer"] = pgbouncer_pools(served.pgbouncer)
        except (AbError, httpx.HTTPError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        except (GeneratorLost, SwarmError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            self.lost = exc
        finally:
            record["duration_s"] = round(time.monotonic() - started, 3)
        return record

    def _generators(self, job: Job, calibration: Calibration, shape: ServerShape) -> int:
        """How many load generators this sample runs: the swarm's workers, ``--generators``, or (auto) enough ab
        processes for the rate the case can reach without an ab bound, each under 70% of a core at the CPU one ab
        spent per request in the calibration."""
        if self.swarm is not None:
            return self.swarm.size
        if self.generators is not None:
            return self.generators
        client_s = calibration.cpu.client_s if calibration.cpu else None
        cores = os.cpu_count() or 1
        free = predict(job.case.scenario, job.concurrency, calibration.cycle_s, shape, hold_s=calibration.server_s,
                       cpu=calibration.cpu, loop_cpu_s=calibration.loop_cpu_s, generators=cores)
        reachable = min((rate for name, rate in free.bounds.items() if name != "ab CPU"),
                        default=free.rps)
        earlier = median([r for rec in self.records if rec["case"] == job.case.key
                          and rec.get("concurrency") == job.concurrency and (r := successful_rps(rec))])
        return generator_count(job.concurrency, max(reachable, earlier or 0.0), client_s, cores)

    def _sample(self, job: Job, served: Served, url: str, calibration: Calibration, prediction: Prediction,
                first: bool, generators: int = 1) -> Sample:
        meter = CpuMeter(served.pid, self.stats, served.middle)
        predicted_rps = prediction.rps
        if self.profile.fixed_requests:
            requests = max(self.requests or self.profile.fixed_requests, job.concurrency)
            expected_s = requests / max(predicted_rps, 1e-3)
            return whole_run(url, requests, job.concurrency, meter=meter, keepalive=self.keepalive,
                             probe=served.probe, timeout_s=max(30.0, 2 * job.concurrency / max(predicted_rps, 1e-3)),
                             time_limit_s=max(60.0, 4 * expected_s + 60))
        earlier = median([r for rec in self.records if rec["case"] == job.case.key
                          and rec.get("concurrency") == job.concurrency and (r := successful_rps(rec))])
        expected = earlier or predicted_rps
        seconds, warm = sample_seconds(self.profile, job.case.key, self.findings), 0.0
        rate = max(expected, 1e-3)
        if prediction.bound.startswith("pool"):
            # Each step queues for a connection again, so a small pool serves the c clients in phases (all first
            # steps, then all second ones) that repeat every c / X: warm up through one, count two.
            warm, seconds = job.concurrency / rate, max(seconds, 2 * job.concurrency / rate)
        elif prediction.slots and prediction.slots >= 2:
            seconds = max(seconds, WINDOW_CYCLES * min(job.concurrency, 2 * prediction.slots) / rate)
        scenario = job.case.scenario
        if scenario.style is Style.THREADPOOL and "seconds" in scenario.workload.parameters:
            # A thread, then an await, of fixed waits: the two stages fall into convoys whose phase sets the rate.
            seconds = max(seconds, CONVOY_S)
        # -n asks for a window of n completions however long; the profile's count only lengthens short windows.
        window = Window.for_case(calibration.cycle_s, min(seconds, self.profile.max_window_s),
                                 self.requests or self.profile.window_completions, self.profile.max_window_s,
                                 math.inf if self.requests else self.profile.count_window_s)
        window = dataclasses.replace(window, warm_s=max(window.warm_s, min(warm, self.profile.max_window_s))
                                     + (FIRST_WARM_S if first else 0.0))
        # ab's -s fires only when no socket moves; a queue of c requests can legitimately take c/X.
        timeout_s = max(30.0, min(3600.0, 2 * job.concurrency / max(expected, 1e-3)))
        return steady_sample(url, job.concurrency, window, log=served.log, meter=meter,
                             expected_rps=expected, keepalive=self.keepalive, probe=served.probe, timeout_s=timeout_s,
                             generators=generators, engine=self.swarm.load if self.swarm is not None else None)


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
    window = f"{record.get('requests')} in {record['window_s']:.2f} s" if record.get("window_s") else f"n={record.get('requests')}"
    return (f"{head} {window:<16} {rps:>8.1f} rps  predicted {model.get('rps', 0):>8.1f} "
            f"({model.get('bound')}) eff {eff:>5}  /ping p50 {p50} ms ({ping_count(record)}){failures}")
