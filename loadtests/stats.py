"""Intervals over repetitions, sequential looks, and percentiles of raw samples.

Throughput and latency are positive and their noise is multiplicative, so intervals are
t-intervals on the log scale, back-transformed: a geometric mean with a ×/÷ spread. A ratio
of two cases measured side by side in each round is judged on the per-round log ratios (a
paired t-interval), so drift that hits both cases of a round cancels. At 3 to 10 rounds this
keeps its coverage where a bootstrap does not (``shared/notes/measurement-statistics.md``: a
percentile bootstrap covers about 76% at k = 3). Quantiles come from scipy's Student's t.

Two cases measured in different blocks (each beside a common reference, never beside each
other) are compared through that reference: the difference of two independent mean log
ratios, with Welch's degrees of freedom (``chained_interval``).

Sequential looks: a verdict may be taken at several round counts (``Looks``: the profile's
rounds, then the checkpoints of its extra rounds). Each extra look is another chance of a
wrong-side verdict, so every look is judged at the Bonferroni level 1 - 0.05 / looks, which
keeps the chance of any wrong verdict over all the looks at 5% or below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

#: Every interval iobench reports is at this level unless it says otherwise.
CONFIDENCE = 0.95
#: A repetition this many robust standard deviations (median/MAD) from the others is flagged, never dropped.
OUTLIER_Z = 3.5


@lru_cache(maxsize=512)
def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("an interval needs at least two values")
    return float(scipy_stats.t.ppf(0.5 + confidence / 2, df))


@dataclass(frozen=True)
class Interval:
    """A ``confidence`` interval around a geometric mean of ``n`` values; unbounded when ``n`` < 2."""

    center: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    @property
    def bounded(self) -> bool:
        return self.n >= 2 and math.isfinite(self.high)

    @property
    def spread(self) -> float:
        """The interval's ×/÷ half-width (1.0 when every value was the same)."""
        return math.sqrt(self.high / self.low) if self.bounded and self.low > 0 else math.inf

    @property
    def half_width(self) -> float:
        """Half the interval's width on the log scale (0.095 is about ±10%)."""
        return math.log(self.spread) if self.bounded else math.inf

    def excludes(self, value: float) -> bool:
        return self.bounded and (self.low > value or self.high < value)

    def to_dict(self) -> dict[str, Any]:
        return {"center": self.center, "low": self.low if self.bounded else None,
                "high": self.high if self.bounded else None, "n": self.n, "confidence": self.confidence}


def _log_interval(logs: Sequence[float], confidence: float) -> Interval:
    n = len(logs)
    mean = float(np.mean(logs))
    if n < 2:
        return Interval(math.exp(mean), 0.0, math.inf, n, confidence)
    half = t_quantile(n - 1, confidence) * float(np.std(logs, ddof=1)) / math.sqrt(n)
    return Interval(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, confidence)


def _logs(values: Sequence[float | None]) -> list[float]:
    return [math.log(v) for v in values if v is not None and v > 0]


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """Geometric mean of positive ``values`` with its t-interval; None without a positive value."""
    logs = _logs(values)
    return _log_interval(logs, confidence) if logs else None


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """The arithmetic mean of ``values`` with its t-interval: for figures that may be 0 (an error rate, a count)."""
    if not values:
        return None
    n, mean = len(values), float(np.mean(values))
    if n < 2:
        return Interval(mean, mean, math.inf, n, confidence)
    half = t_quantile(n - 1, confidence) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, confidence)


def ratio_interval(pairs: Sequence[tuple[float, float]], confidence: float = CONFIDENCE) -> Interval | None:
    """The ratio a/b over paired repetitions: a paired t-interval on log(a_i / b_i)."""
    logs = [math.log(a / b) for a, b in pairs if a and b and a > 0 and b > 0]
    return _log_interval(logs, confidence) if logs else None


def log_ratio_interval(log_ratios: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """The same interval from per-round log ratios already formed (``pairing`` averages a round's pairs first)."""
    return _log_interval(list(log_ratios), confidence) if log_ratios else None


def chained_interval(a_over_r: Sequence[float], b_over_r: Sequence[float],
                     confidence: float = CONFIDENCE) -> Interval | None:
    """a/b from two independent sets of per-round log ratios to a common reference r (a/r and b/r):
    exp(mean(a/r) - mean(b/r)) with Welch's t interval. None unless each side has two rounds."""
    if len(a_over_r) < 2 or len(b_over_r) < 2:
        return None
    va, vb = float(np.var(a_over_r, ddof=1)) / len(a_over_r), float(np.var(b_over_r, ddof=1)) / len(b_over_r)
    center = float(np.mean(a_over_r)) - float(np.mean(b_over_r))
    n = min(len(a_over_r), len(b_over_r))
    if va + vb == 0:
        return Interval(math.exp(center), math.exp(center), math.exp(center), n, confidence)
    df = (va + vb) ** 2 / (va**2 / (len(a_over_r) - 1) + vb**2 / (len(b_over_r) - 1))
    half = t_quantile(df, confidence) * math.sqrt(va + vb)
    return Interval(math.exp(center), math.exp(center - half), math.exp(center + half), n, confidence)


@dataclass(frozen=True)
class Looks:
    """The round counts at which a run may take a verdict, and the level each look is judged at."""

    checkpoints: tuple[int, ...]
    familywise: float = CONFIDENCE

    @classmethod
    def planned(cls, repeat: int, max_repeat: int, extra: Sequence[int] = (5, 8, 10)) -> Looks:
        """The profile's rounds, then each of ``extra`` above them up to ``max_repeat``."""
        return cls((repeat, *(c for c in extra if repeat < c <= max_repeat)))

    @property
    def confidence(self) -> float:
        """Bonferroni: each of the looks at 1 - alpha / looks keeps the overall error at alpha or below."""
        return 1 - (1 - self.familywise) / len(self.checkpoints)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoints": list(self.checkpoints), "confidence": self.confidence, "familywise": self.familywise,
                "correction": "Bonferroni over the looks"}


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
