"""The plan of a run (loadtests.plan) and the ratios it makes possible (loadtests.pairing)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from rich.console import Console
from synthetic import make_record

from app.catalogue import SCENARIOS_BY_ID
from app.settings import Settings
from loadtests.budget import peak
from loadtests.findings import FINDINGS, finding_pairs
from loadtests.pairing import compare, round_log_ratios
from loadtests.plan import Block, Job, Pair, blocks, comparisons, sequence
from loadtests.profiles import PROFILES, Profile, cases_for
from loadtests.results import Record, RunFolder, successful_rps
from loadtests.runner import Estimates, Harness, finding_jobs, server_settings


def job(key: str, c: int = 40) -> Job:
    scenario = SCENARIOS_BY_ID[key.split("[", 1)[0]]
    return Job(next(case for case in cases_for(scenario, 0.05) if case.key == key), c)


def adjacent(walk: list[Job], a: Job, b: Job) -> bool:
    return any({walk[i], walk[i + 1]} == {a, b} for i in range(len(walk) - 1))


def test_a_star_is_walked_from_a_leaf_with_its_centre_between_the_others() -> None:
    ref, *leaves = (job(k) for k in ("wait/sync/time", "wait/async-blocking/time", "wait/async/asyncio",
                                     "wait/threadpool/time"))
    walk = sequence([ref, *leaves], [(leaf, ref) for leaf in leaves])
    assert all(adjacent(walk, ref, leaf) for leaf in leaves)
    assert len(walk) == 2 * len(leaves) - 1  # A R B R C: the centre once less than the leaves
    assert walk[0] in leaves and walk.count(ref) == len(leaves) - 1
    lone = job("file/sync/open[small.bin]")
    assert sequence([ref, leaves[0], lone], [(leaves[0], ref)])[-1] == lone  # a case in no pair comes last


def default_plan() -> tuple[list[Block], list[Job]]:
    profile = PROFILES["default"]
    jobs = [Job(case, profile.concurrency) for case in profile.cases()]
    jobs += finding_jobs(jobs, FINDINGS)
    pairs = comparisons(finding_pairs(FINDINGS))
    return blocks(jobs, pairs, profile.concurrency), jobs


def test_every_pair_of_the_default_profile_is_side_by_side_or_through_the_reference() -> None:
    planned, jobs = default_plan()
    assert {j for b in planned for j in b.jobs} == set(jobs)  # every case measured, in some block
    pairs = comparisons(finding_pairs(FINDINGS))
    measured = {j.case.key for j in jobs}
    for pair in pairs:
        if pair.numerator not in measured or pair.denominator not in measured:
            continue
        c = pair.concurrency or 40
        together = [b for b in planned if {(j.case.key, j.concurrency) for j in b.sequence}
                    >= {(pair.numerator, c), (pair.denominator, c)}]
        if together:
            walk = together[0].sequence
            at = {(j.case.key, j.concurrency): j for j in walk}
            assert adjacent(walk, at[(pair.numerator, c)], at[(pair.denominator, c)]), pair
        else:  # both sides beside the workload's reference, each in its own block
            workload = pair.numerator.split("/", 1)[0]
            for side in (pair.numerator, pair.denominator):
                home = next(b for b in planned if any(j.case.key == side for j in b.sequence))
                assert any(j.case.key == f"{workload}/sync/psycopg2" for j in home.sequence), (pair, home.name)
    # Every required finding is judged side by side, never through a reference.
    for finding in (f for f in FINDINGS if f.required):
        c = finding.concurrency or 40
        assert any({(j.case.key, j.concurrency) for j in b.sequence} >= {(finding.numerator, c), (finding.denominator, c)}
                   for b in planned), finding.id


def test_the_pairs_a_reader_ranks_get_their_own_rounds_and_stay_side_by_side() -> None:
    profile = PROFILES["default"]
    jobs = [Job(case, profile.concurrency) for case in profile.cases()]
    jobs += finding_jobs(jobs, FINDINGS)
    pairs = comparisons(finding_pairs(FINDINGS))
    planned = blocks(jobs, pairs, profile.concurrency, rounds=3, ranked_rounds=5)
    block = next(b for b in planned if b.name == "asyncpg")
    ranked = {(j.case.key) for j in block.ranked}
    assert {"lookup/async/asyncpg", "lookup/sync/psycopg2", "write/sync/psycopg2-threaded"} <= ranked
    assert "pg_sleep/async/asyncpg" not in ranked  # a finding's pair: the profile's rounds
    assert block.total_rounds == 5
    for number in (3, 4):
        late = block.round(number)
        assert {j.case.key for j in late} <= ranked
        assert all(late[i] != late[i + 1] for i in range(len(late) - 1))  # no case twice in a row
        at = {j.case.key: j for j in late}
        for workload in ("lookup", "report", "write"):
            assert adjacent(late, at[f"{workload}/async/asyncpg"], at[f"{workload}/sync/psycopg2"])
    early = {j.case.key for j in block.round(2)}
    assert "pg_sleep/async/asyncpg" in early and "lookup/async/asyncpg" in early
    assert block.samples() == sum(len(block.round(n)) for n in range(5))
    wait = next(b for b in planned if b.name == "local/wait")
    assert wait.total_rounds == 3 and not wait.ranked  # no ranked pair: no extra rounds


def test_the_drivers_profile_ranks_every_driver_table_row_and_judges_no_required_finding() -> None:
    profile = PROFILES["drivers"]
    jobs = [Job(case, profile.concurrency) for case in profile.cases()]
    jobs += finding_jobs(jobs, FINDINGS)
    planned = blocks(jobs, comparisons(finding_pairs(FINDINGS)), profile.concurrency, rounds=profile.repeat,
                     ranked_rounds=profile.ranked_repeat)
    ranked = {(a.case.key, b.case.key) for block in planned for a, b in block.ranked_pairs}
    rows = {j.case.key for j in jobs if j.case.scenario.style.value in ("sync", "async")
            and j.case.scenario.driver.name != "psycopg2"}  # every driver in its own style, beside the reference
    assert rows and all((key, f"{key.split('/')[0]}/sync/psycopg2") in ranked for key in rows)
    assert profile.ranked_max_repeat > profile.ranked_repeat > profile.repeat
    measured = {j.case.key for j in jobs}
    assert not any(set(f.cases) <= measured for f in FINDINGS if f.required)  # the run exits 4: none judged
    assert PROFILES["drivers"].declared() == PROFILES["default"].declared()  # the default's shape


def test_no_block_of_the_default_profile_overfills_a_shared_postgres() -> None:
    planned, _ = default_plan()
    settings = server_settings(Settings(), PROFILES["default"])
    groups = [(b.name, {d.name for j in b.jobs for d in j.case.scenario.drivers if d.pooled}, False) for b in planned]
    needed, worst = peak(settings, groups)
    assert needed <= 90, (needed, worst)  # max_connections 100, 3 reserved, room for the harness and others


def records(num: str, den: str, ratios: list[float], *, drift: list[float] | None = None, block: str = "b") -> list[Record]:
    """``num`` then ``den`` side by side in each round, ``num`` ``ratio`` times faster; ``drift`` scales both."""
    found = []
    for number, ratio in enumerate(ratios):
        scale = (drift or [1.0] * len(ratios))[number]
        a = make_record(num, round=number, block=block, position=0, noise=scale * ratio)
        b = make_record(den, round=number, block=block, position=1, noise=scale)
        found += [a, b]
    return found


def test_a_round_is_one_ratio_and_drift_between_rounds_cancels() -> None:
    num, den = "wait/async/asyncio", "wait/sync/time"
    base = successful_rps(make_record(num)) or 0.0
    base /= successful_rps(make_record(den)) or 1.0
    found = compare(records(num, den, [1.0, 1.0, 1.0], drift=[1.0, 0.6, 1.3]), num, den, successful_rps)
    assert found is not None and found.through is None and found.rounds == 3
    assert found.interval.center == pytest.approx(base) and found.interval.spread == pytest.approx(1.0)


def test_a_round_with_several_adjacent_pairs_counts_once() -> None:
    num, den = "lookup/async/asyncpg", "lookup/sync/psycopg2"
    rows = [make_record(den, round=0, position=0, noise=1.0), make_record(num, round=0, position=1, noise=2.0),
            make_record(den, round=0, position=2, noise=1.0), make_record(num, round=0, position=5, noise=9.0)]
    ratios = round_log_ratios(rows, num, den, successful_rps)
    assert list(ratios) == [("synthetic", 0)]  # one value for the round: the adjacent pair, not the far one
    a, b = successful_rps(rows[1]) or 0.0, successful_rps(rows[0]) or 1.0
    assert ratios[("synthetic", 0)] == pytest.approx(math.log(a / b))


def test_cases_of_different_blocks_compare_through_the_reference() -> None:
    a, b, ref = "lookup/async/asyncpg", "lookup/async/psycopg3-async", "lookup/sync/psycopg2"
    rows = records(a, ref, [1.0, 1.02, 0.98], block="asyncpg") + records(b, ref, [1.0, 0.99, 1.01], block="psycopg3")
    found = compare(rows, a, b, successful_rps)
    assert found is not None and found.through == ref and found.interval.low < found.interval.center < found.interval.high


class QuietProgress:
    """What the harness's extra rounds ask of rich's Progress, printing nothing."""

    console = Console(quiet=True)
    tasks = {0: type("Task", (), {"total": 0.0})()}

    def update(self, *args: object, **kwargs: object) -> None: ...


def narrowed(tmp_path: Path, profile: Profile, block: Block, pairs: list[Pair], rounds: int,
             scatter: dict[str, tuple[float, float]]) -> Harness:
    """A harness whose samples are synthetic (each case's efficiency alternating by round as ``scatter`` says), after
    ``rounds`` rounds of ``block`` and its narrowing."""
    harness = Harness(profile, [block], pairs, RunFolder(tmp_path), Console(quiet=True), Settings())

    def record(measured: Job, served: object, name: str, number: int, position: int, *args: object) -> None:
        eff = scatter.get(measured.case.key, (1.0, 1.0))[number % 2]
        harness.records.append(make_record(measured.case.key, round=number, eff=eff, block=name, position=position))

    harness._record = record  # type: ignore[method-assign,assignment]
    for number in range(rounds):
        for position, measured in enumerate(block.round(number)):
            record(measured, None, block.name, number, position)

    harness._narrow(block, None, rounds, QuietProgress(), 0, lambda j: 0.5)  # type: ignore[arg-type]
    return harness


def test_a_ranked_pair_gets_more_rounds_only_while_its_interval_is_too_wide(tmp_path: Path) -> None:
    profile = dataclasses.replace(PROFILES["default"], ranked_repeat=2, ranked_max_repeat=6)
    jobs = [job(k) for k in ("lookup/sync/psycopg2", "lookup/async/asyncpg", "write/sync/psycopg2", "write/async/asyncpg")]
    pairs = comparisons(())
    block = next(b for b in blocks(jobs, pairs, 40, rounds=2, ranked_rounds=2) if b.name == "asyncpg")
    # lookup's ratio scatters by ±30% between rounds, write's by 0.2%: only lookup's pair needs more rounds.
    harness = narrowed(tmp_path, profile, block, pairs, 2,
                       {"lookup/async/asyncpg": (1.3, 0.7), "write/async/asyncpg": (1.002, 0.998)})
    later = [r for r in harness.records if r["round"] >= 2]
    assert {r["case"] for r in later} == {"lookup/async/asyncpg", "lookup/sync/psycopg2"}
    assert max(r["round"] for r in later) == 5  # still ±30% apart: narrowed up to ranked_max_repeat


def test_a_required_findings_pair_is_narrowed_on_its_own_metric_up_to_the_profiles_cap(tmp_path: Path) -> None:
    profile = dataclasses.replace(PROFILES["default"], required_max_repeat=6)
    required = [f.id for f in FINDINGS if f.required]
    jobs = [job(k) for k in ("wait/sync/time", "wait/async/asyncio", "wait/threadpool/time")]
    pairs = comparisons(finding_pairs(FINDINGS))
    block = next(b for b in blocks(jobs, pairs, 40, rounds=3, required=required) if b.name == "local/wait")
    assert {finding for *_, finding in block.required_pairs} == {"F2-wait", "F3-wait"}
    # F2's ratio scatters by ±30% between rounds, F3's by 0.2%: only F2's pair needs more rounds.
    harness = narrowed(tmp_path, profile, block, pairs, 3,
                       {"wait/async/asyncio": (1.3, 0.7), "wait/threadpool/time": (1.002, 0.998)})
    later = [r for r in harness.records if r["round"] >= 3]
    assert {r["case"] for r in later} == {"wait/async/asyncio", "wait/sync/time"}
    assert max(r["round"] for r in later) == 5  # still ±30% apart: narrowed up to required_max_repeat (6 rounds)
    assert harness._next_round("local/wait") == 6  # a later look numbers its rounds after these


def test_a_later_look_measures_an_inconclusive_pair_up_to_its_checkpoint_in_rounds_of_new_numbers(tmp_path: Path) -> None:
    from loadtests.findings import FINDINGS_BY_ID, Verdict

    profile = dataclasses.replace(PROFILES["default"], required_max_repeat=6)
    jobs = [job(k) for k in ("wait/sync/time", "wait/async/asyncio", "wait/threadpool/time")]
    pairs = comparisons(finding_pairs(FINDINGS))
    block = next(b for b in blocks(jobs, pairs, 40, rounds=3, required=[f.id for f in FINDINGS if f.required])
                 if b.name == "local/wait")
    harness = narrowed(tmp_path, profile, block, pairs, 3, {"wait/async/asyncio": (1.3, 0.7)})  # F2 takes rounds 3-5
    f3 = FINDINGS_BY_ID["F3-wait"]
    harness.judge = lambda records, confidence: [  # F3 still inconclusive after its 3 rounds
        Verdict(f3, "inconclusive", None, None, None, None, None, None, None, 3, "straddles")]
    measured: list[tuple[list[str], range]] = []
    harness._block = lambda b, rounds, *args: measured.append(([j.case.key for j in b.sequence], rounds))  # type: ignore[method-assign]

    harness._extra_looks(QuietProgress(), 0, Estimates(profile))  # type: ignore[arg-type]
    assert measured == [(["wait/threadpool/time", "wait/sync/time"], range(6, 8))]  # to 5 rounds, after round 5
