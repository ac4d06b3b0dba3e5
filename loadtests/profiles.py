"""Profiles: which cases a run measures, how hard, and with which server settings.

A *case* is a scenario of the catalogue plus the query it is requested with (the file
scenarios are measured on both the 4 KiB and the 8 MiB file).

The ``default`` profile is the article scaled to a 2-core machine and a shared Postgres
(max_connections = 100): 50 ms waits instead of 3 s, a threadpool of 16 instead of AnyIO's
40, and 40 clients instead of 100, which keeps the article's ratio of clients to threads
(100 / 40 = 2.5). Pools of 40 are as large as the clients, so the threadpool binds ``def``
routes and the clients bind ``async`` ones, as in the article; sweeps show where the pools
bind. Sixteen threads keep the collapse (1 / 16 of ``sync``) clearly under the 1/10 claim.

Every profile but ``article`` reports steady state: each sample counts only the completions of
a window clear of ab's start-up and drain (``sample``), so a figure does not depend on how many
requests were asked for. ``article`` keeps the article's own method, ``ab -n 200 -c 100`` start
to end, and its report says that its figures include the start-up, as the article's do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from app.catalogue import SCENARIOS, Scenario, select
from app.data_folder import LARGE_FILE, SMALL_FILE
from loadtests.claims import scenario_of
from loadtests.findings import FINDINGS
from loadtests.plan import TABLE_WORKLOADS


@dataclass(frozen=True)
class Case:
    """One measurement target: a scenario and its query string."""

    scenario: Scenario
    query: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """Stable id in results and reports: the scenario id, plus the file for file cases."""
        name = dict(self.query).get("name")
        return f"{self.scenario.id}[{name}]" if name else self.scenario.id

    def path(self) -> str:
        query = "&".join(f"{key}={value}" for key, value in self.query)
        return f"{self.scenario.path}?{query}" if query else self.scenario.path

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.key, **self.scenario.to_dict(), "query": dict(self.query)}


#: About ±10%: the half-width on the log scale a ranked pair's interval is narrowed to.
RANKED_HALF_WIDTH = 0.095


@dataclass(frozen=True)
class Profile:
    """A named plan: cases, load, and the settings the harness starts the service with."""

    name: str
    description: str
    seconds: float
    concurrency: int
    threadpool_tokens: int
    pool_max: int
    #: A sample's steady window lasts at least this long, and long enough for ``window_completions`` successful
    #: completions at the expected rate, unless ``count_window_s`` passes first (``sample.Window``). Completions of
    #: a saturated service come about as a Poisson stream: a count of n is uncertain by 1/sqrt(n), ±6% at 300,
    #: and a ratio of two by sqrt(2/n).
    measure_seconds: float = 0.3
    window_completions: int = 300
    count_window_s: float = 1.0
    #: A window with fewer than ``steady.MIN_COMPLETIONS`` is doubled up to this long.
    max_window_s: float = 10.0
    #: The article's own method instead: ``ab -n fixed_requests`` start to end, start-up included.
    fixed_requests: int | None = None
    scenario_ids: tuple[str, ...] | None = None
    sweep_ids: tuple[str, ...] = ()
    sweep_levels: tuple[int, ...] = (1, 16, 128)
    #: Rounds: every case of a block is measured this many times, the block's sequence back to back.
    repeat: int = 4
    #: Rounds of the pairs a reader ranks drivers and setups on (``plan.RANKED``: the driver and setup tables),
    #: when more than ``repeat``: a fixed number, planned before the run.
    ranked_repeat: int = 0
    #: Then, while a ranked pair's 95% interval is wider than ``ranked_half_width`` on the log scale (0.095: about
    #: ±10%), its block measures that pair in one more round, up to ``ranked_max_repeat`` (a fixed-width sequential
    #: interval, Chow and Robbins 1965: the rounds stop on the interval's width, never on its value).
    ranked_max_repeat: int = 0
    #: The half-width (log scale) ranked pairs and required findings are narrowed to.
    ranked_half_width: float = RANKED_HALF_WIDTH
    #: The same for a required finding's pair after ``repeat`` rounds: one round at a time while its 95% interval is
    #: wider than ``ranked_half_width``, up to this many rounds (0: never), before the verdict's first look.
    required_max_repeat: int = 0
    #: Rounds a required finding may grow to while inconclusive (each look then judged at the Bonferroni
    #: level, ``stats.Looks``); equal to ``repeat``: a fixed number of rounds, judged at 95%.
    max_repeat: int = 4
    #: Sweep points draw curves, not verdicts: measured this many times each.
    sweep_repeat: int = 1
    ping_interval: float = 0.02
    acquire_timeout: float = 10.0
    #: uvicorn worker processes of the started service.
    workers: int = 1
    #: Round-trip time the wire proxy adds between the service and Postgres for every case (0: direct).
    db_rtt_ms: float = 0.0
    #: Server connections PgBouncer keeps per database (``default_pool_size``) when a run goes through it.
    pgbouncer_pool_size: int = 20
    #: Variants measured beside the main cases, in the same rounds (``--rtt-levels``, ``--pgbouncer``,
    #: ``--worker-levels``): RTTs for the RTT-swept cases; then, at each RTT, every Postgres case
    #: through PgBouncer, and on each other worker count.
    rtt_levels: tuple[float, ...] = ()
    pgbouncer: bool = False
    worker_levels: tuple[int, ...] = ()
    #: Compare every Postgres case with its workload's reference driver (the production table's rows).
    all_to_reference: bool = False

    def scenarios(self) -> list[Scenario]:
        if self.scenario_ids is None:
            return [s for s in SCENARIOS if s.workload.name != "hello"]
        wanted = set(self.scenario_ids)
        return [s for s in SCENARIOS if s.id in wanted]

    def cases(self, scenarios: list[Scenario] | None = None) -> list[Case]:
        return [case for scenario in (scenarios or self.scenarios()) for case in cases_for(scenario, self.seconds)]

    def declared(self) -> dict[str, int]:
        """The server shape and load this profile is named for, before any command-line override:
        the findings derive their thresholds from it (``findings.Declared``)."""
        named = PROFILES.get(self.name, self)
        return {"threadpool_tokens": named.threadpool_tokens, "pool_max": named.pool_max, "concurrency": named.concurrency,
                "workers": named.workers}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "seconds": self.seconds,
            "concurrency": self.concurrency, "threadpool_tokens": self.threadpool_tokens,
            "pool_max": self.pool_max, "measure_seconds": self.measure_seconds,
            "window_completions": self.window_completions, "count_window_s": self.count_window_s,
            "max_window_s": self.max_window_s, "ranked_repeat": self.ranked_repeat,
            "ranked_max_repeat": self.ranked_max_repeat, "ranked_half_width": self.ranked_half_width,
            "required_max_repeat": self.required_max_repeat,
            "fixed_requests": self.fixed_requests, "sweep_levels": list(self.sweep_levels),
            "repeat": self.repeat, "max_repeat": self.max_repeat, "sweep_repeat": self.sweep_repeat,
            "ping_interval": self.ping_interval, "workers": self.workers, "db_rtt_ms": self.db_rtt_ms,
            "rtt_levels": list(self.rtt_levels), "pgbouncer": self.pgbouncer, "worker_levels": list(self.worker_levels),
            "all_to_reference": self.all_to_reference, "declared": self.declared(),
        }


#: What an RTT sweep (``--rtt-levels``) measures: the queries whose style and driver matter once the
#: database is a network hop away, on the drivers that have a sync and an async side.
RTT_WORKLOADS = ("lookup", "report", "write")
RTT_DRIVERS = ("psycopg2", "psycopg3-sync", "asyncpg", "psycopg3-async")


def rtt_swept(scenario: Scenario) -> bool:
    return scenario.workload.name in RTT_WORKLOADS and scenario.driver.name in RTT_DRIVERS


def cases_for(scenario: Scenario, seconds: float) -> list[Case]:
    if "seconds" in scenario.workload.parameters:
        return [Case(scenario, (("seconds", f"{seconds:g}"),))]
    if scenario.workload.name == "file":
        return [Case(scenario, (("name", SMALL_FILE),)), Case(scenario, (("name", LARGE_FILE),))]
    return [Case(scenario)]


ARTICLE_FOUR = ("wait/sync/time", "wait/async-blocking/time", "wait/async/asyncio", "wait/threadpool/time")
#: Every scenario a required finding judges: a profile without one of them cannot pass.
REQUIRED = tuple(dict.fromkeys(
    scenario.id for f in FINDINGS if f.required for case in f.cases if (scenario := scenario_of(case))
))
PG_SLEEP_TWINS = (
    "pg_sleep/sync/psycopg2", "pg_sleep/async-blocking/psycopg2", "pg_sleep/async/asyncpg", "pg_sleep/threadpool/psycopg2",
)

#: What the driver table and the rest of the drivers page read: each Postgres driver in its own style (and
#: with its defaults), the hand-written ``minimal`` routes (FastAPI's share) and psycopg2's two pools.
DRIVER_TABLE = tuple(s.id for s in SCENARIOS if s.workload.name in TABLE_WORKLOADS
                     and s.style.value in ("sync", "async", "minimal"))

#: The held-out test's cases (``heldout``): bound by threads, clients and connections (the waits), by the
#: CPU (a lookup on an async and on a sync driver) and by the event loop (a blocking driver in async def).
DEFAULT_SWEEP = ("wait/sync/time", "wait/async/asyncio", "pg_sleep/sync/psycopg2", "pg_sleep/async/asyncpg",
                 "lookup/async/asyncpg", "lookup/sync/psycopg2", "lookup/async-blocking/psycopg2")

DEFAULT = Profile(
    name="default",
    description="The whole catalogue at 50 ms waits, 40 clients, a threadpool of 16 and pools of 40: "
    "the article's shape scaled to 2 cores and a shared Postgres. About ten minutes on 2 cores.",
    seconds=0.05,
    repeat=3,
    max_repeat=5,
    ranked_repeat=5,
    ranked_max_repeat=7,
    required_max_repeat=12,
    concurrency=40,
    threadpool_tokens=16,
    pool_max=40,
    sweep_ids=DEFAULT_SWEEP,
)

PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            name="quick",
            description="The article's four cases and every case a required finding judges (their pg_sleep twins "
            "on each driver, the blocking-file pair): about three minutes. The CI gate.",
            seconds=0.05,
            concurrency=40,
            threadpool_tokens=16,
            pool_max=30,
            scenario_ids=tuple(dict.fromkeys(ARTICLE_FOUR + REQUIRED)),
            # Three rounds, and two more for a required finding still inconclusive (each look at the Bonferroni level).
            repeat=3,
            max_repeat=5,
            sweep_ids=("wait/sync/time", "wait/async/asyncio"),
            sweep_levels=(1, 16, 128),
        ),
        DEFAULT,
        # The default's shape and sample sizes on the driver table alone, with room to narrow every row.
        dataclasses.replace(
            DEFAULT,
            name="drivers",
            description="The driver table alone (lookups, reports and writes on every Postgres driver, FastAPI's share, "
            "psycopg2's pools) in the default's shape, each driver measured beside psycopg2 until its ratio's 95% "
            "interval is within ±10%, up to 32 rounds (a CPU-bound rate wanders over seconds on a shared machine: "
            "results/window-noise). For a team choosing a driver; about five to seven minutes on 2 cores here. It exits 4, "
            "as it judges none of the required findings.",
            max_repeat=3,
            ranked_max_repeat=32,
            scenario_ids=DRIVER_TABLE,
            sweep_ids=(),
        ),
        Profile(
            name="workers",
            description="The quick profile's cases on 2 uvicorn workers, each with 8 threads and pools of 18: the same "
            "16 threads in all as the default, 36 connections per driver, and two event loops. Shows the model's bounds "
            "scaling with workers (a blocking route now serves two at a time) within a max_connections of 100.",
            seconds=0.05,
            concurrency=40,
            threadpool_tokens=8,
            pool_max=18,
            workers=2,
            scenario_ids=tuple(dict.fromkeys(ARTICLE_FOUR + REQUIRED)),
        ),
        Profile(
            name="production",
            description="The production shape: point lookups on psycopg2 (sync, async-blocking, threadpool), psycopg 3 "
            "(sync and async) and asyncpg with the database 0, 1 and 5 ms away (wire proxy), directly and through "
            "PgBouncer, on 1 and on 2 uvicorn workers (the same 16 threads and pools of 40 in all). About six to seven "
            "minutes on 2 cores; it exits 4, as it judges none of the required findings.",
            seconds=0.05,
            concurrency=40,
            threadpool_tokens=16,
            pool_max=40,
            scenario_ids=("lookup/sync/psycopg2", "lookup/async-blocking/psycopg2", "lookup/threadpool/psycopg2",
                          "lookup/sync/psycopg3-sync", "lookup/async/asyncpg", "lookup/async/psycopg3-async"),
            rtt_levels=(0.0, 1.0, 5.0),
            pgbouncer=True,
            worker_levels=(1, 2),
            all_to_reference=True,
        ),
        Profile(
            name="article",
            description="The article as published: 3 s waits, ab -n 200 -c 100, AnyIO's default 40 threads; its four "
            "cases and their pg_sleep twins. Slow: each async-blocking case takes 20 minutes, as in the article. "
            "Pools of 40 fit a shared Postgres but equal the threadpool, so asyncpg cannot beat it here (F2).",
            seconds=3.0,
            concurrency=100,
            threadpool_tokens=40,
            pool_max=40,
            fixed_requests=200,
            repeat=3,
            max_repeat=3,
            scenario_ids=ARTICLE_FOUR + PG_SLEEP_TWINS,
            acquire_timeout=120.0,
            sweep_ids=ARTICLE_FOUR,
            sweep_levels=(1, 10, 40, 100, 200),
        ),
    )
}


def narrow(scenarios: list[Scenario], workloads: set[str] | None, styles: set[str] | None, drivers: set[str] | None) -> list[Scenario]:
    """``scenarios`` that also pass the command line's filters."""
    allowed = {s.id for s in select(workloads, styles, drivers)}
    return [s for s in scenarios if s.id in allowed]
