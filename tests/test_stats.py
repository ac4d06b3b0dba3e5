"""Intervals over repetitions and percentiles of raw samples (loadtests.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadtests.stats import Looks, chained_interval, interval, log_ratio_interval, outliers, percentiles, ratio_interval, t_quantile


def test_t_quantiles_are_students() -> None:
    assert t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(9) == pytest.approx(2.262, abs=1e-3)
    assert t_quantile(35) == pytest.approx(2.030, abs=1e-3)
    assert t_quantile(10_000) == pytest.approx(1.960, abs=1e-3)
    assert t_quantile(4, 0.99) == pytest.approx(4.604, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile(0)


def test_looks_split_the_error_between_them() -> None:
    fixed = Looks.planned(5, 5)
    assert fixed.checkpoints == (5,) and fixed.confidence == pytest.approx(0.95)
    three = Looks.planned(3, 10)
    assert three.checkpoints == (3, 5, 8, 10) and three.confidence == pytest.approx(1 - 0.05 / 4)


def _wrong_side_passes(looks: Looks, confidence: float, trials: int = 4000) -> float:
    """How often a ratio exactly at the threshold passes ('>= 1') at some look: the error the correction bounds."""
    rng = np.random.default_rng(7)
    passed = 0
    for _ in range(trials):
        logs = rng.normal(0.0, 0.08, looks.checkpoints[-1])
        for k in looks.checkpoints:
            found = log_ratio_interval(list(logs[:k]), confidence)
            assert found is not None
            if found.low >= 1.0:
                passed += 1
                break
            if found.high < 1.0:
                break
    return passed / trials


def test_the_bonferroni_level_keeps_repeated_looks_at_their_error() -> None:
    looks = Looks.planned(3, 10)
    # Uncorrected 95% intervals at four looks pass a ratio sitting on the threshold more often than the
    # 2.5% one side of a 95% interval allows; judged at the Bonferroni level they stay under it.
    assert _wrong_side_passes(looks, 0.95) > 0.035
    assert _wrong_side_passes(looks, looks.confidence) <= 0.025


def test_a_chained_ratio_goes_through_the_reference() -> None:
    # a/r = 2 and b/r = 0.5 in independent blocks: a/b = 4, with Welch's interval around it.
    a_r = [np.log(2.0) + d for d in (0.02, -0.03, 0.01, 0.0)]
    b_r = [np.log(0.5) + d for d in (-0.01, 0.02, 0.0, -0.01)]
    found = chained_interval(a_r, b_r)
    assert found is not None and found.center == pytest.approx(4.0, rel=0.02) and found.low < 4.0 < found.high
    assert chained_interval(a_r[:1], b_r) is None


def test_interval_is_a_geometric_t_interval() -> None:
    found = interval([100.0, 110.0, 121.0])
    assert found is not None and found.n == 3
    assert found.center == pytest.approx(110.0)
    logs = [math.log(v) for v in (100.0, 110.0, 121.0)]
    sd = math.sqrt(sum((x - sum(logs) / 3) ** 2 for x in logs) / 2)
    assert found.high == pytest.approx(110.0 * math.exp(4.303 * sd / math.sqrt(3)), rel=1e-3)
    assert found.low * found.high == pytest.approx(found.center**2)  # symmetric on the log scale


def test_one_value_has_no_interval_and_no_values_no_result() -> None:
    single = interval([5.0])
    assert single is not None and not single.bounded and single.center == pytest.approx(5.0)
    assert interval([]) is None and interval([0.0, -1.0]) is None


def test_ratio_interval_is_paired_so_shared_drift_cancels() -> None:
    # Round 2 ran 30% slower for both cases: the paired ratio does not see it.
    a, b = [200.0, 140.0, 202.0], [100.0, 70.0, 101.0]
    paired = ratio_interval(list(zip(a, b, strict=True)))
    assert paired is not None and paired.center == pytest.approx(2.0, rel=1e-3)
    assert paired.spread < 1.01
    unpaired_a, unpaired_b = interval(a), interval(b)
    assert unpaired_a is not None and unpaired_b is not None and unpaired_a.spread > 1.3


def test_percentiles_are_values_that_occurred() -> None:
    assert percentiles([10.0, 20.0], [50]) == [10.0]  # nearest rank, not the maximum, not 15
    samples = [float(v) for v in range(1, 101)]
    assert percentiles(samples, [50, 90, 99]) == [50.0, 90.0, 99.0]
    assert percentiles([], [50]) == [None]


def test_outliers_are_flagged_not_dropped() -> None:
    assert outliers([100.0, 101.0, 99.0, 100.5, 40.0]) == [4]
    assert outliers([100.0, 101.0]) == []
