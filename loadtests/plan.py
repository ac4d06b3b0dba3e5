"""The plan of a run: which cases are compared, and the blocks that measure them side by side.

A ratio between two cases means something on this machine only if both sides were measured
close together: absolute rates drift by a third within minutes (steal from other guests), two
samples a second apart much less. So a run is a list of **blocks**. A block is one server and
a sequence of cases; a round measures the sequence once (odd rounds in reverse, so slow drift
hits both sides of a pair alike), and every comparison the report makes is between two cases
of one block, adjacent in its sequence (``sequence``: a walk that puts each compared pair next
to each other, repeating a case where several compare with it).

Which cases share a block:

- a case without a database (``wait``, ``file``) shares its workload's block;
- a Postgres case goes to its async driver's block: an async driver's own, a sync driver's
  async twin's (psycopg2 with asyncpg, as the ``threadpool`` style pairs them; psycopg2 on its
  other pool too), the sync drivers at their defaults together. Two async pools of the profile's
  size and a sync one do not fit a shared Postgres (max_connections 100), so async drivers never
  share;
- each block also measures the **reference** case of each workload it holds (``psycopg2`` in
  its own ``sync`` style), so two cases of different blocks compare through it
  (``pairing.compare``: the difference of two paired log ratios);
- the same, again, per setup (round-trip time, PgBouncer, worker count): a setup is a server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from app.catalogue import DRIVERS, DRIVERS_BY_NAME, Kind, Style

if TYPE_CHECKING:
    from loadtests.profiles import Case

#: The driver every other one is compared with, in its own style, per workload.
REFERENCE_DRIVER = "psycopg2"
#: Workloads the driver table compares.
TABLE_WORKLOADS = ("lookup", "report", "write")
#: Pairs whose ratio the RTT sweep follows (async over sync).
CROSSOVER_PAIRS = (("asyncpg", "psycopg2"), ("psycopg3-async", "psycopg3-sync"))


@dataclass(frozen=True)
class Job:
    """One case at one concurrency on one setup: what a sample measures."""

    case: Case
    concurrency: int
    sweep: bool = False
    #: A finding's own concurrency (an extra measurement beside the profile's).
    for_finding: str | None = None
    #: Round-trip time the wire proxy adds between the service and Postgres (0: direct).
    rtt_ms: float = 0.0
    #: A measurement beside the main ones (another RTT level, PgBouncer, worker count).
    variant: bool = False
    #: How the service reaches Postgres: ``direct``, or ``pgbouncer`` (transaction pooling in between).
    via: str = "direct"
    #: uvicorn workers of the job's server, when it differs from the profile's.
    workers: int | None = None

    @property
    def setup(self) -> str:
        """The server setup in a block name: '' for the profile's own."""
        return ((f"@{self.rtt_ms:g}ms" if self.rtt_ms else "") + ("+pgbouncer" if self.via == "pgbouncer" else "")
                + (f"x{self.workers}workers" if self.workers else ""))

    @property
    def family(self) -> str:
        """The block this job's case belongs to, before its setup (see the module docstring)."""
        scenario = self.case.scenario
        if not any(driver.pooled for driver in scenario.drivers):
            return f"local/{scenario.workload.name}"
        driver = scenario.driver
        if driver.kind is Kind.ASYNC:
            return driver.name
        if driver.alternative_to:  # another pool for the same driver: beside that driver, side by side
            return DRIVERS_BY_NAME[driver.alternative_to].async_twin or driver.alternative_to
        return driver.async_twin or "sync defaults"

    @property
    def block(self) -> str:
        return self.family + self.setup

    @property
    def label(self) -> str:
        return f"{self.case.key} c={self.concurrency}" + (f" {self.setup}" if self.setup else "")


@dataclass(frozen=True)
class Pair:
    """Two cases a run compares (numerator over denominator), and why."""

    numerator: str
    denominator: str
    why: str
    #: Compare them at this concurrency (a finding's own), else at the profile's.
    concurrency: int | None = None


#: Cases no comparison reads (the catalogue's other styles) are measured in this many rounds, not all of them:
#: their figures stand alone, and the time goes to the rounds of the pairs a reader compares.
ALONE_ROUNDS = 1
#: Pairs a reader ranks drivers or setups on: measured in the profile's ``ranked_repeat`` rounds, more than the
#: others, so their intervals can separate drivers a few per cent apart.
RANKED = ("driver table", "setup table")


@dataclass
class Block:
    """One server's share of a run: the sequence a round measures, and the sweep points after the rounds."""

    name: str
    sequence: list[Job]
    sweeps: list[Job] = field(default_factory=list)
    #: Jobs in no compared pair (at the end of the sequence): measured in the first ``ALONE_ROUNDS`` rounds only.
    alone: frozenset[Job] = frozenset()
    #: Rounds every other job is measured in (the profile's ``repeat``).
    rounds: int = 1
    #: The ranked pairs (``RANKED``: numerator, denominator), measured in ``ranked_rounds`` rounds when that is more
    #: than ``rounds``.
    ranked_pairs: tuple[tuple[Job, Job], ...] = ()
    ranked_rounds: int = 0
    #: The pairs of required findings (numerator, denominator, the finding's id): narrowed like the ranked pairs
    #: when the profile allows (``Profile.required_max_repeat``).
    required_pairs: tuple[tuple[Job, Job, str], ...] = ()

    @property
    def jobs(self) -> list[Job]:
        """Each job once, in sequence order."""
        return list(dict.fromkeys(self.sequence))

    @cached_property
    def ranked(self) -> frozenset[Job]:
        return frozenset(job for pair in self.ranked_pairs for job in pair)

    @property
    def total_rounds(self) -> int:
        return max(self.rounds, self.ranked_rounds if self.ranked else 0)

    def rounds_of(self, job: Job) -> int:
        if job in self.alone:
            return min(ALONE_ROUNDS, self.rounds)
        return max(self.rounds, self.ranked_rounds) if job in self.ranked else self.rounds

    def round(self, number: int) -> list[Job]:
        """The sequence of round ``number`` (0-based): odd rounds run it backwards. A later round leaves out the
        jobs whose rounds are done; the pairs left stay adjacent (the walk put them side by side)."""
        chosen = [job for job in self.sequence if number < self.rounds_of(job)]
        # Leaving jobs out can put a case twice in a row (R A R -> R R): once is the same pairing.
        chosen = [job for index, job in enumerate(chosen) if index == 0 or chosen[index - 1] != job]
        return chosen[::-1] if number % 2 else chosen

    def samples(self) -> int:
        return sum(len(self.round(number)) for number in range(self.total_rounds))


def reference(workload: str) -> str:
    return f"{workload}/sync/{REFERENCE_DRIVER}"


def own_style(driver_name: str) -> str:
    driver = next(d for d in DRIVERS if d.name == driver_name)
    return str(Style.ASYNC if driver.kind is Kind.ASYNC else Style.SYNC)


def comparisons(findings: Iterable[tuple[str, str, str, int | None]], *, all_to_reference: bool = False,
                cases: Iterable[str] = ()) -> list[Pair]:
    """Every pair a run compares: the findings' (id, numerator, denominator, concurrency), each pooled
    driver's own style against the reference per table workload, each driver's idiomatic lookup against
    its hand-written minimal one (FastAPI's share), the RTT crossover pairs; with ``all_to_reference``
    every Postgres case of ``cases`` against its workload's reference (the production table)."""
    pairs = [Pair(num, den, why, concurrency) for why, num, den, concurrency in findings]
    for driver in DRIVERS:
        if not driver.pooled or driver.name == REFERENCE_DRIVER:
            continue
        for workload in TABLE_WORKLOADS:
            if any(w.name == workload for w in driver.workloads):
                pairs.append(Pair(f"{workload}/{own_style(driver.name)}/{driver.name}", reference(workload), "driver table"))
    for driver in DRIVERS:
        if Style.MINIMAL in driver.styles:
            pairs.append(Pair(f"lookup/{own_style(driver.name)}/{driver.name}", f"lookup/minimal/{driver.name}",
                              "FastAPI's share"))
    for workload in TABLE_WORKLOADS:
        for asynchronous, synchronous in CROSSOVER_PAIRS:
            pairs.append(Pair(f"{workload}/async/{asynchronous}", f"{workload}/sync/{synchronous}", "RTT crossover"))
    if all_to_reference:
        for key in cases:
            workload = key.split("/", 1)[0]
            if workload in TABLE_WORKLOADS and key != reference(workload):
                pairs.append(Pair(key, reference(workload), "setup table"))
    return list(dict.fromkeys(pairs))


def sequence(nodes: Sequence[Job], edges: Iterable[tuple[Job, Job]]) -> list[Job]:
    """A walk over ``nodes`` in which the two jobs of every edge stand next to each other at least once.

    Greedy, like a postman's route: start from a job with an odd number of pairs left (an Euler
    path can only start or end at one), the fewest first; step along an unused pair to the
    neighbour with the fewest left, so a star's leaves come off its centre one by one (A R B R C:
    the centre once less than the leaves); start again from an odd job, else the busiest, when
    stuck; jobs in no pair come last.
    """
    left: dict[Job, set[Job]] = {node: set() for node in nodes}
    for a, b in edges:
        if a != b and a in left and b in left:
            left[a].add(b)
            left[b].add(a)
    order = {node: index for index, node in enumerate(nodes)}
    walk: list[Job] = []
    while any(left.values()):
        current = walk[-1] if walk and left[walk[-1]] else _start(left, order)
        if not walk or walk[-1] != current:
            walk.append(current)
        while left[current]:
            step = min(left[current], key=lambda n: (len(left[n]), order[n]))
            left[current].discard(step)
            left[step].discard(current)
            walk.append(step)
            current = step
    return walk + [node for node in nodes if node not in walk]


def _start(left: dict[Job, set[Job]], order: dict[Job, int]) -> Job:
    """Where a walk resumes: a job with an odd number of pairs left (fewest first), else the one with the most."""
    pending = [node for node in left if left[node]]
    odd = [node for node in pending if len(left[node]) % 2]
    if odd:
        return min(odd, key=lambda n: (len(left[n]), order[n]))
    return max(pending, key=lambda n: (len(left[n]), -order[n]))


def blocks(jobs: Sequence[Job], pairs: Sequence[Pair], profile_concurrency: int,
           judged: Collection[tuple[str, int]] = (), *, rounds: int = 1, ranked_rounds: int = 0,
           required: Collection[str] = ()) -> list[Block]:
    """The run's blocks: jobs grouped by ``Job.block``, each with its workloads' reference jobs, in an order
    that keeps every pair of ``pairs`` adjacent; sweep jobs go to their case's block, after the rounds.
    ``judged`` (case, concurrency) are measured every round though in no pair: a claim bounds them alone.
    Every job is measured in ``rounds`` rounds, a job of a ranked pair (``RANKED``) in ``ranked_rounds`` if more.
    A pair whose ``why`` is in ``required`` (the ids of required findings) is kept as a block's required pair."""
    main = [job for job in jobs if not job.sweep]
    by_key = {(job.case.key, job.concurrency, job.setup): job for job in main}
    grouped: dict[str, list[Job]] = {}
    for job in main:
        grouped.setdefault(job.block, []).append(job)
    for name, members in grouped.items():
        if name.startswith("local/"):
            continue
        for job in list(members):
            workload = job.case.scenario.workload.name
            ref = by_key.get((reference(workload), job.concurrency, job.setup))
            if workload in TABLE_WORKLOADS and ref is not None and ref not in members:
                members.insert(0, ref)
    result = []
    for name, members in grouped.items():
        at = {(job.case.key, job.concurrency): job for job in members}
        found = [(p, at[(p.numerator, c)], at[(p.denominator, c)]) for p in pairs
                 for c in [p.concurrency or profile_concurrency]
                 if (p.numerator, c) in at and (p.denominator, c) in at]
        edges = [(a, b) for _, a, b in found]
        paired = {job for edge in edges for job in edge}
        alone = frozenset(j for j in members if j not in paired and (j.case.key, j.concurrency) not in judged)
        ranked = tuple(dict.fromkeys((a, b) for p, a, b in found if p.why in RANKED))
        needed = tuple((a, b, p.why) for p, a, b in found if p.why in required)
        result.append(Block(name, sequence(members, edges), alone=alone, rounds=rounds, ranked_pairs=ranked,
                            ranked_rounds=ranked_rounds, required_pairs=needed))
    index = {block.name: block for block in result}
    for job in jobs:
        if job.sweep:
            home = dataclasses.replace(job, sweep=False).block
            index.setdefault(home, Block(home, [], rounds=rounds)).sweeps.append(job)
            if home not in [b.name for b in result]:
                result.append(index[home])
    return result
