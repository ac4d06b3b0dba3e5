"""Steady-state windows (loadtests.steady): counted from the completion log, or from ab's -g file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtests.steady import gnuplot_window, parse_gnuplot, window_rate

FIXTURES = Path(__file__).parent / "fixtures" / "ab"


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


def test_bursts_barely_move_the_slope_where_a_count_is_off_by_a_burst() -> None:
    # Sixteen threads finishing 2 x 50 ms sleeps together: bursts of 16 every 0.1 s, 160 rps; windows of six
    # periods (WINDOW_CYCLES) placed anywhere.
    times = [ns(j * 0.1 + i * 20e-6) for j in range(40) for i in range(16)]
    slopes, counts = [], []
    for start in np.arange(0.3, 1.5, 0.013):
        found = window_rate(times, ns(start), ns(start + 0.65))
        assert found is not None
        slopes.append(found.rps)
        counts.append(sum(1 for t in times if ns(start) <= t <= ns(start + 0.65)) / 0.6)
    assert max(abs(rate / 160 - 1) for rate in slopes) < 0.06
    assert np.std(slopes) < np.std(counts) / 2


def test_completions_that_do_not_bunch_are_counted_over_their_time() -> None:
    rng = np.random.default_rng(3)
    times = [int(t * 1e9) for t in np.cumsum(rng.exponential(1 / 1000, 3000))]
    found = window_rate(times, ns(0.5), ns(1.5))
    assert found is not None and found.rps == pytest.approx(1000, rel=0.08) and found.completions > 900
    even = [ns(k * 0.1) for k in range(100)]  # one at a time, 10 a second (a blocked event loop)
    one = window_rate(even, ns(0.25), ns(1.3))
    assert one is not None and one.rps == pytest.approx(10.0, rel=0.01)
    assert window_rate(even, ns(0.25), ns(0.5)) is None  # too few completions for a rate


def test_a_recorded_ab_gnuplot_file_gives_the_steady_rate_not_the_start_up() -> None:
    meta = json.loads((FIXTURES / "wait-sync.g.json").read_text())
    rows = parse_gnuplot((FIXTURES / "wait-sync.g.tsv").read_text())
    assert len(rows) == 626 and all(total > 0 for _, total in rows)
    found = gnuplot_window(rows, meta["started_epoch"] + 0.3, meta["stopped_epoch"])
    assert found is not None and found.method == "ab -g whole seconds" and found.seconds >= 2
    # 16 threads over 2 x 50 ms allow 160 rps; ab's whole-run figure (136.4) counts its start-up and is lower.
    assert 140 <= found.rps <= 165 and found.rps > meta["ab_rps"]
    # Seconds whose requests may not all have finished before the stop are left out.
    assert gnuplot_window(rows, meta["started_epoch"] + 0.3, meta["started_epoch"] + 1.5) is None


def test_completions_bunched_in_one_corner_do_not_tilt_the_rate() -> None:
    # A pool of one connection handing it round: twelve completions within 12 ms of a 2.1 s window.
    bunched = [ns(1.0 + i * 0.001) for i in range(12)]
    found = window_rate(bunched, ns(0.0), ns(2.1))
    assert found is not None and found.rps == pytest.approx(12 / 2.1, rel=0.6)  # what the window held, give or take
    assert found.rps < 12  # not the 1,000 a second of a line through the twelve completions themselves


def test_a_window_lasts_for_its_count_of_completions_up_to_the_counting_cap() -> None:
    from loadtests.sample import Window

    window = Window(warm_s=0.1, seconds=0.3, completions=300, max_seconds=10.0, count_max_s=1.0)
    assert window.planned_s(2000) == 0.3  # a fast case: the minimum already holds 600
    assert window.planned_s(600) == pytest.approx(0.5)  # 300 completions at 600 rps
    assert window.planned_s(10) == 1.0  # a slow case stops at the cap; MIN_COMPLETIONS then doubles it if short
    asked = Window(warm_s=0.1, seconds=0.3, completions=2000, max_seconds=10.0)  # -n 2000: however long it takes
    assert asked.planned_s(1000) == pytest.approx(2.0)
