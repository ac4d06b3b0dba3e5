"""Does a case's figure depend on the sample's size? Windows of n and of factor x n, alternated on one server.

ab's own rate (requests over the whole run) rises with n: its start-up and its drain weigh less in a
longer run. A steady window should not. This measures one case's steady rate with windows of ``n``
and of ``factor * n`` completions in alternating order (A B, B A, ...) on the same server, and gives
each pair's ratio (the long window's rate over the short one's) and their median.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.plan import Job
from loadtests.runner import Harness, sample_seconds
from loadtests.sample import Window, steady_sample
from loadtests.stats import median
from loadtests.work import CpuMeter


@dataclass(frozen=True)
class SizePair:
    short_rps: float | None
    long_rps: float | None
    short_completions: int
    long_completions: int

    @property
    def ratio(self) -> float | None:
        return self.long_rps / self.short_rps if self.long_rps and self.short_rps else None


def size_pairs(harness: Harness, job: Job, n: int, factor: int = 4, pairs: int = 3) -> list[SizePair]:
    """``pairs`` pairs of windows of ``n`` and ``factor * n`` completions, alternating which comes first."""
    found = []
    with harness.serve(job) as served:
        calibration = harness._calibrate("size-check", job, served)
        url = served.url + job.case.path()
        meter = CpuMeter(served.pid, harness.stats, served.middle)

        expected = calibration.rps or 100.0

        def one(completions: int) -> tuple[float | None, int]:
            window = Window.for_case(calibration.cycle_s, 0.0, completions, 120.0)
            sample = steady_sample(url, job.concurrency, window, log=served.log, meter=meter,
                                   expected_rps=expected, keepalive=harness.keepalive)
            return sample.rps, sample.steady.completions if sample.steady else 0

        # The pools open and the caches warm before anything counts; its rate sizes the windows that follow.
        expected = one(n)[0] or expected
        for index in range(pairs):
            if index % 2 == 0:
                (short, done_short), (long, done_long) = one(n), one(factor * n)
            else:
                (long, done_long), (short, done_short) = one(factor * n), one(n)
            found.append(SizePair(short, long, done_short, done_long))
    return found


def median_ratio(found: list[SizePair]) -> float | None:
    return median([r for pair in found if (r := pair.ratio) is not None])


__all__ = ["SizePair", "median_ratio", "sample_seconds", "size_pairs"]
