"""Findings judged on intervals over rounds (loadtests.findings): thresholds from the model, verdicts, exit codes."""

from __future__ import annotations

import dataclasses
import math
from typing import Unpack

import pytest
from synthetic import RecordOptions, make_record, make_records, make_run

from loadtests.cli import verdict_code
from loadtests.errors import EXIT_FINDING_FAILED, EXIT_INCONCLUSIVE, EXIT_PASS
from loadtests.findings import FINDINGS, FINDINGS_BY_ID, Declared, Finding, bar, evaluate, evaluate_all, loop_queue_ratio
from loadtests.model import ServerShape
from loadtests.profiles import PROFILES
from loadtests.results import Record

DECLARED = Declared(ServerShape.declared(threadpool_tokens=16, pool_max=40), concurrency=40)
ASYNC_WINS = FINDINGS_BY_ID["F2-wait"]
COLLAPSE = FINDINGS_BY_ID["F1-wait"]


def rounds(num: str, den: str, num_noise: tuple[float, ...], den_noise: tuple[float, ...] | None = None,
           **fields: Unpack[RecordOptions]) -> list[Record]:
    """Both cases in len(num_noise) rounds, each round's throughput scaled by its noise."""
    den_noise = den_noise or tuple(1.0 for _ in num_noise)
    return [record for r, (a, b) in enumerate(zip(num_noise, den_noise, strict=True))
            for record in (make_record(num, round=r, noise=a, **fields), make_record(den, round=r, noise=b))]


def test_thresholds_come_from_the_model_at_the_profiles_shape() -> None:
    assert bar(ASYNC_WINS, DECLARED, 40).threshold == pytest.approx(math.sqrt(40 / 16))
    assert bar(COLLAPSE, DECLARED, 40).threshold == pytest.approx(math.sqrt(1 / 16))
    assert bar(FINDINGS_BY_ID["F3-wait"], DECLARED, 40).threshold == pytest.approx(math.sqrt(2))
    assert bar(FINDINGS_BY_ID["F2-asyncpg"], DECLARED, 40).model_ratio == pytest.approx(40 / 16)
    assert "sqrt(2.5)" in bar(ASYNC_WINS, DECLARED, 40).reason


def test_a_shape_that_cannot_show_the_effect_is_not_applicable() -> None:
    # The article profile: pools of 40 equal the threadpool's 40, so asyncpg cannot beat psycopg2 there.
    article = Declared.from_run({"profile": PROFILES["article"].to_dict()})
    assert article is not None
    found = bar(FINDINGS_BY_ID["F2-asyncpg"], article, 100)
    assert found.threshold is None and "cannot test the claim" in found.reason
    # Fewer clients than threads: the threadpool never binds.
    assert bar(ASYNC_WINS, DECLARED, 8).threshold is None
    records = rounds("wait/async/asyncio", "wait/sync/time", (1.0, 1.0, 1.0), c=8)
    assert evaluate(ASYNC_WINS, records, DECLARED).status == "not applicable"


def test_a_pass_needs_the_whole_interval_past_the_threshold() -> None:
    verdict = evaluate(ASYNC_WINS, rounds("wait/async/asyncio", "wait/sync/time", (1.0, 0.97, 1.03)), DECLARED)
    assert verdict.status == "pass" and verdict.explained is True and verdict.rounds == 3
    assert verdict.ratio is not None and verdict.threshold is not None and verdict.ratio.low >= verdict.threshold
    assert verdict.reason == ASYNC_WINS.why


def test_a_fail_needs_the_whole_interval_to_miss() -> None:
    # eff 0.5 on the async side: ratio about 1.3, under sqrt(2.5) = 1.58 all the way.
    records = rounds("wait/async/asyncio", "wait/sync/time", (0.52, 0.5, 0.51))
    verdict = evaluate(ASYNC_WINS, records, DECLARED)
    assert verdict.status == "fail" and verdict.ratio is not None and verdict.threshold is not None
    assert verdict.ratio.high < verdict.threshold
    assert "bound by clients" in verdict.reason and "by threadpool" in verdict.reason


def test_an_interval_across_the_threshold_is_inconclusive() -> None:
    records = rounds("wait/async/asyncio", "wait/sync/time", (1.0, 0.45, 0.9))
    verdict = evaluate(ASYNC_WINS, records, DECLARED)
    assert verdict.status == "inconclusive" and "straddles" in verdict.reason


def test_one_round_gives_no_interval_so_no_verdict() -> None:
    verdict = evaluate(ASYNC_WINS, rounds("wait/async/asyncio", "wait/sync/time", (1.0,)), DECLARED)
    assert verdict.status == "inconclusive" and "no interval" in verdict.reason


def test_a_pass_far_from_the_model_is_unexplained() -> None:
    # Async 8x sync where Little's law says 2.5x: a pass the model cannot explain.
    records = rounds("wait/async/asyncio", "wait/sync/time", (3.2, 3.1, 3.3))
    verdict = evaluate(ASYNC_WINS, records, DECLARED)
    assert verdict.status == "pass" and verdict.explained is False and verdict.label == "PASS, UNEXPLAINED"
    assert "pass, unexplained" in verdict.reason


def test_errors_make_a_round_unusable_and_are_never_speed() -> None:
    # A sync side that answers 503 fast: ab's raw rps would rise, the successful rps does not.
    records = [make_record("wait/async/asyncio", round=r) for r in range(3)]
    records += [make_record("wait/sync/time", round=r, non_2xx=30) for r in range(3)]
    verdict = evaluate(ASYNC_WINS, records, DECLARED)
    assert verdict.status == "inconclusive" and "failed or non-2xx" in verdict.reason


def test_not_measured_cases_say_so() -> None:
    verdict = evaluate(ASYNC_WINS, [make_record("wait/sync/time", round=r) for r in range(3)], DECLARED)
    assert verdict.status == "not measured" and "wait/async/asyncio" in verdict.reason
    sweep_only = [make_record("wait/async/asyncio", sweep=True), make_record("wait/sync/time")]
    assert evaluate(ASYNC_WINS, sweep_only, DECLARED).status == "not measured"


def test_ping_findings_use_the_loop_queue_model() -> None:
    f4 = FINDINGS_BY_ID["F4-file"]
    records = [make_record(key, round=r, c=8, ping_p50=ping, noise=noise, for_finding=f4.id)
               for r, noise in enumerate((1.0, 0.95, 1.05))
               for key, ping in (("file/async-blocking/open[large.bin]", 30.0), ("file/async/aiofiles[large.bin]", 3.5))]
    verdict = evaluate(f4, records, DECLARED)
    # From the calibration: the blocking route's predicted rate and /ping's own latency on that server.
    predicted = records[0]["model"]
    assert predicted is not None
    assert verdict.predicted_ratio == pytest.approx(loop_queue_ratio(8, predicted["rps"], 0.9))
    # The model (from the calibration) says the setup can show the stall; the bar is the claim's own 2x.
    assert verdict.bar is not None and verdict.bar.model_ratio is not None and verdict.bar.model_ratio >= 1.5
    assert verdict.threshold == pytest.approx(2.0) and "from the calibration" in verdict.bar.reason
    assert verdict.status == "pass"
    assert evaluate(f4, [with_pings(r, 5) for r in records], DECLARED).status == "inconclusive"


def with_pings(record: Record, count: int) -> Record:
    """``record`` as if ``count`` /ping probes had answered."""
    ping = record["ping"]
    assert ping is not None
    return {**record, "ping": {**ping, "count": count}}


def test_the_synthetic_run_passes_and_exits_0() -> None:
    records = make_records()
    verdicts = evaluate_all(records, make_run(records))
    assert {v.finding.id: v.status for v in verdicts if v.finding.required} == dict.fromkeys(
        [f.id for f in FINDINGS if f.required], "pass")
    assert verdict_code(verdicts) == EXIT_PASS


def test_exit_codes_order_failed_before_inconclusive() -> None:
    records = make_records()
    verdicts = evaluate_all(records, make_run(records))
    failed = [dataclasses.replace(v, status="fail") if v.finding.id == "F2-wait" else v for v in verdicts]
    unsettled = [dataclasses.replace(v, status="inconclusive") if v.finding.id == "F3-wait" else v for v in failed]
    assert verdict_code(unsettled) == EXIT_FINDING_FAILED
    assert verdict_code([dataclasses.replace(v, status="not measured") if v.finding.id == "F3-wait" else v
                         for v in verdicts]) == EXIT_INCONCLUSIVE


def test_a_server_shaped_otherwise_is_judged_against_the_profile() -> None:
    # --pool-max 1: the bar stays the profile's; the model's ratio for this server explains the fail.
    f2 = FINDINGS_BY_ID["F2-asyncpg"]
    tiny = [make_record(key, round=r, eff=1.0) for r in range(3) for key in f2.cases]
    for record in tiny:
        assert record["steady"] is not None
        record["steady"]["rps"] = 10.0  # both bound by a pool of 1
    verdict = evaluate(f2, tiny, DECLARED)
    assert verdict.status == "fail" and verdict.threshold == pytest.approx(math.sqrt(2.5))


def test_every_finding_names_cases_of_the_catalogue() -> None:
    from loadtests.claims import scenario_of

    for finding in FINDINGS:
        assert all(scenario_of(case) for case in finding.cases) and len(finding.cases) == 2, finding.id
        assert isinstance(finding, Finding)




def test_a_required_finding_not_applicable_is_never_a_pass() -> None:
    # Whether F4 can show comes from the calibration (the blocking route's predicted rate, /ping's own latency).
    # A read that holds the loop too briefly to matter, or no /ping calibrated, cannot test the claim: the
    # finding is NOT APPLICABLE and the run exits 4, never 0, even with /ping ten times slower.
    f4 = FINDINGS_BY_ID["F4-file"]
    records = [r for r in make_records() if r["case"] in (f4.numerator, f4.denominator) and r.get("concurrency") == 8]
    for record in records:
        assert record["model"] is not None
        record["model"]["rps"] = 1e6  # a read the loop is done with in a microsecond
    verdicts = evaluate_all(records, make_run(records), findings=(f4,))
    assert verdicts[0].status == "not applicable" and "cannot test the claim" in verdicts[0].reason
    assert verdict_code(verdicts) == EXIT_INCONCLUSIVE
    for record in records:
        record["ping_uncontended_ms"] = None
    verdicts = evaluate_all(records, make_run(records), findings=(f4,))
    assert verdicts[0].status == "not applicable" and "calibration" in verdicts[0].reason


def test_no_threshold_is_computed_from_the_rounds_it_judges() -> None:
    records = make_records()
    for verdict in evaluate_all(records, make_run(records)):
        if verdict.bar is not None:
            assert verdict.bar.source in ("claim", "declared shape", "calibration"), verdict.finding.id
    # F4's bar moves with the calibration, not with the /ping medians of its rounds.
    f4 = FINDINGS_BY_ID["F4-file"]
    at_8 = [r for r in records if r["case"] in (f4.numerator, f4.denominator) and r.get("concurrency") == 8]
    before = evaluate(f4, at_8, DECLARED).threshold
    for record in at_8:
        assert record["ping"] is not None
        record["ping"]["p50_ms"] = (record["ping"]["p50_ms"] or 1.0) * 3
    assert evaluate(f4, at_8, DECLARED).threshold == pytest.approx(before)


def test_looks_are_judged_at_the_bonferroni_level() -> None:
    records = rounds("wait/async/asyncio", "wait/sync/time", (1.0, 0.97, 1.03))
    at_95 = evaluate(ASYNC_WINS, records, DECLARED)
    at_3_looks = evaluate(ASYNC_WINS, records, DECLARED, confidence=1 - 0.05 / 3)
    assert at_95.judged is not None and at_3_looks.judged is not None and at_3_looks.ratio is not None
    assert at_3_looks.judged.spread > at_95.judged.spread  # a wider interval decides
    assert at_3_looks.ratio.confidence == pytest.approx(0.95)  # tables still show the 95% interval
