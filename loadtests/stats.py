"""Intervals over repetitions, and percentiles of raw samples.

Throughput and latency are positive and their noise is multiplicative, so intervals are
t-intervals on the log scale, back-transformed: a geometric mean with a ×/÷ spread. A ratio
of two cases measured in the same rounds is judged on the per-round log ratios (a paired
t-interval), so drift that hits both cases of a round cancels. At 3 to 10 repetitions this
keeps its 95% coverage where a bootstrap does not (see ``shared/notes/measurement-statistics.md``:
a percentile bootstrap covers about 76% at k = 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Two-sided 95% quantiles of Student's t, by degrees of freedom (df > 30 uses the last entry below it).
_T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
    20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip
#: A repetition this many robust standard deviations (median/MAD) from the others is flagged, never dropped.
OUTLIER_Z = 3.5


def t_975(df: int) -> float:
    """The 97.5% quantile of t with ``df`` degrees of freedom (1.96 beyond the table)."""
    if df < 1:
        raise ValueError("an interval needs at least two values")
    known = [d for d in _T_975 if d <= df]
    return _T_975[max(known)] if df <= 120 else 1.96


@dataclass(frozen=True)
class Interval:
    """A 95% interval around a geometric mean of ``n`` values; unbounded when ``n`` < 2."""

    center: float
    low: float
    high: float
    n: int

    @property
    def bounded(self) -> bool:
        return self.n >= 2

    @property
    def spread(self) -> float:
        """The interval's ×/÷ half-width (1.0 when every value was the same)."""
        return math.sqrt(self.high / self.low) if self.bounded and self.low > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"center": self.center, "low": self.low if self.bounded else None,
                "high": self.high if self.bounded else None, "n": self.n}


def _log_interval(logs: Sequence[float]) -> Interval:
    n = len(logs)
    mean = float(np.mean(logs))
    if n < 2:
        return Interval(math.exp(mean), 0.0, math.inf, n)
    half = t_975(n - 1) * float(np.std(logs, ddof=1)) / math.sqrt(n)
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n)


def interval(values: Sequence[float]) -> Interval | None:
    """Geometric mean of positive ``values`` with its 95% t-interval; None without a positive value."""
    logs = [math.log(v) for v in values if v is not None and v > 0]
    return _log_interval(logs) if logs else None


def ratio_interval(pairs: Sequence[tuple[float, float]]) -> Interval | None:
    """The ratio a/b over paired repetitions: a paired t-interval on log(a_i / b_i)."""
    logs = [math.log(a / b) for a, b in pairs if a and b and a > 0 and b > 0]
    return _log_interval(logs) if logs else None


def median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def percentiles(samples: Sequence[float], points: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles (numpy's ``inverted_cdf``: always a value that occurred)."""
    if not len(samples):
        return [None for _ in points]
    return [float(v) for v in np.percentile(np.asarray(samples, dtype=float), list(points), method="inverted_cdf")]


def outliers(values: Sequence[float]) -> list[int]:
    """Indices of values more than ``OUTLIER_Z`` robust standard deviations (on the log scale) from the median."""
    logs = np.log(np.asarray([v for v in values], dtype=float))
    if len(logs) < 3:
        return []
    center = np.median(logs)
    mad = np.median(np.abs(logs - center)) * 1.4826
    if mad == 0:
        return []
    return [i for i, value in enumerate(logs) if abs(value - center) / mad > OUTLIER_Z]
