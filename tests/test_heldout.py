"""The held-out test (loadtests.heldout): the model, calibrated on the rounds, judged on sweep points it never saw."""

from __future__ import annotations

from synthetic import make_record, make_run

from loadtests.heldout import TARGET_SHARE, judge, predict_point
from loadtests.results import Record


def sweep_run(eff_at: dict[int, float]) -> list[Record]:
    """wait/sync/time in three rounds at c = 40 and swept at ``eff_at``'s concurrencies, each measured at that
    share of what the held-out model predicts for it."""
    records = [make_record("wait/sync/time", round=r, eff=0.97) for r in range(3)]
    run = make_run(records)
    for c, eff in eff_at.items():
        point = make_record("wait/sync/time", c=c, sweep=True)
        predicted = predict_point(point, records[:3], run).prediction
        assert predicted is not None and point["steady"] is not None
        point["steady"]["rps"] = predicted.rps * eff
        records.append(point)
    return records


def test_sweep_points_are_predicted_from_the_calibration_and_the_rounds() -> None:
    records = sweep_run({1: 0.98, 8: 0.95, 16: 0.93, 64: 0.9, 128: 0.88})
    found = judge(records, make_run(records))
    assert found is not None and len(found.judged) == 5 and found.hits == 5 and found.passed
    points = {p.concurrency: p for p in found.points}
    assert points[8].bound == "clients" and points[64].bound == "threadpool"  # 8 clients bind below 16 threads
    high, higher = points[64].prediction, points[128].prediction
    assert high is not None and higher is not None and high.rps == higher.rps  # 16 / S, however many clients


def test_a_point_the_model_misses_is_named() -> None:
    records = sweep_run({1: 0.98, 8: 0.95, 16: 0.6, 64: 0.9})
    found = judge(records, make_run(records))
    assert found is not None and found.hits == 3 and [p.concurrency for p in found.misses] == [16]
    assert found.share == 0.75 and found.passed is (0.75 >= TARGET_SHARE)
    assert found.to_dict()["misses"][0]["bound"] in ("clients", "threadpool")


def test_no_sweep_no_judgement() -> None:
    records = [make_record("wait/sync/time", round=r) for r in range(3)]
    assert judge(records, make_run(records)) is None
