"""Intervals over repetitions and percentiles of raw samples (loadtests.stats)."""

from __future__ import annotations

import math

import pytest

from loadtests.stats import interval, outliers, percentiles, ratio_interval, t_975


def test_t_quantiles_are_students() -> None:
    assert t_975(2) == pytest.approx(4.303)
    assert t_975(9) == pytest.approx(2.262)
    assert t_975(35) == pytest.approx(2.042)  # the nearest table entry below
    assert t_975(1000) == pytest.approx(1.96)
    with pytest.raises(ValueError):
        t_975(0)


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
