"""How often the intervals iobench judges on cover the truth when rounds stop on an interval's width.

The default profile measures a required finding's pair in 3 rounds, then one more round at a time
while the 95% interval of its ratio is wider than ±10% (0.095 on the log scale), up to 12, and
judges it on the Bonferroni level of its looks (97.5% for two: after those rounds, and at 5 rounds
if still inconclusive). Stopping on the width is stopping when the rounds happen to agree, so
the interval is a little too narrow, more so from a small start (Chow and Robbins's guarantee is
asymptotic). This simulates that procedure with iobench's own interval (``stats.log_ratio_interval``)
on normal per-round log ratios of spread ``sd`` (measured spreads: 0.02 to 0.16) and prints, per sd:
how often the 95% and the verdict's intervals cover the true ratio, the rounds used, and how often
a verdict is wrong when the true ratio sits exactly on the threshold (the worst case), with and
without the narrowing.

    .venv/bin/python results/narrowing-coverage/simulate.py [TRIALS]
"""

from __future__ import annotations

import math
import sys

import numpy as np

from loadtests.profiles import PROFILES, RANKED_HALF_WIDTH
from loadtests.stats import CONFIDENCE, Looks, log_ratio_interval


def run_once(rng: np.random.Generator, sd: float, first: int, cap: int, looks: Looks) -> tuple[bool, bool, int, bool]:
    """One finding whose true log ratio is 0 and whose threshold is 1: (95% covers, verdict's interval covers,
    rounds, verdict wrong)."""
    logs = list(rng.normal(0.0, sd, first))
    while len(logs) < cap:
        shown = log_ratio_interval(logs, CONFIDENCE)
        if shown is None or shown.half_width <= RANKED_HALF_WIDTH:
            break
        logs.append(float(rng.normal(0.0, sd)))
    shown, judged = log_ratio_interval(logs, CONFIDENCE), log_ratio_interval(logs, looks.confidence)
    assert shown is not None and judged is not None
    covers_95, covers_judged = not shown.excludes(1.0), not judged.excludes(1.0)
    wrong = judged.excludes(1.0)  # a pass or a fail where the truth is the threshold itself
    for checkpoint in looks.checkpoints[1:]:
        if wrong or len(logs) >= checkpoint:
            continue
        logs += list(rng.normal(0.0, sd, checkpoint - len(logs)))
        again = log_ratio_interval(logs, looks.confidence)
        wrong = again is not None and again.excludes(1.0)
    return covers_95, covers_judged, len(logs), wrong


def main(trials: int) -> None:
    profile = PROFILES["default"]
    looks = Looks.planned(profile.repeat, profile.max_repeat)
    rng = np.random.default_rng(20261204)
    print(f"{trials} trials per row; {profile.repeat} rounds first, narrowed to ±{math.expm1(RANKED_HALF_WIDTH):.0%} "
          f"up to {profile.required_max_repeat}; looks at {looks.checkpoints}, each at {looks.confidence:.1%}\n")
    print("| per-round sd | narrowed: 95% covers | verdict's interval covers | rounds, the look at 5 included (mean) "
          "| wrong verdict at the threshold | without narrowing: wrong verdict |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for sd in (0.02, 0.05, 0.08, 0.10, 0.13, 0.16, 0.20):
        narrowed = [run_once(rng, sd, profile.repeat, profile.required_max_repeat, looks) for _ in range(trials)]
        plain = [run_once(rng, sd, profile.repeat, profile.repeat, looks) for _ in range(trials)]

        def share(rows: list[tuple[bool, bool, int, bool]], column: int) -> float:
            return sum(row[column] for row in rows) / trials

        print(f"| {sd:.2f} | {share(narrowed, 0):.3f} | {share(narrowed, 1):.3f} | "
              f"{sum(row[2] for row in narrowed) / trials:.1f} | {share(narrowed, 3):.3f} | {share(plain, 3):.3f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
