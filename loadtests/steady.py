"""Steady-state throughput: requests completed inside a window that leaves ab's start-up and end out.

An ab run is not steady at either end. ab sends its first request alone and opens its other
connections only once it is answered (``worker_test`` in httpd's support/ab.c), so the load
starts one uncontended latency W late and fills the server over the next moments; at the end
the last requests drain through a part-empty server. ``ab``'s own rate (requests over the whole
run) counts both, so it rises with the number of requests asked for. iobench counts instead
only the requests completed between a warm-up, discarded by time, and the moment the harness
stops ab (while every client is still busy, so there is no drain):

- **From the service's completion log** (``app.completions``): the monotonic time of every
  successful response, read by the harness without asking the service. The rate is the slope of
  the completion count against time over the window (``window_rate``): a closed loop of
  deterministic waits completes in bursts (16 threads finishing their sleeps together), and a
  plain count over a window is off by up to a burst at each end (measured here on
  ``wait/sync/time``: ±6% over 1.5 s windows for a count, ±0.8% for the slope, same mean).
- **From ab's ``-g`` file**, for a service whose log the harness cannot read: ab records each
  request's start in whole seconds, so only requests started in the whole seconds inside the
  window count, and the window must hold at least one (samples then last several seconds).
  Requests still in flight when ab stops are not in the file, so the window ends early enough
  for every request started in it to have finished (``gnuplot_window``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Method = Literal["completion log", "ab -g whole seconds"]
#: Fewer completions than this in a window give no rate.
MIN_COMPLETIONS = 5
#: ``window_rate`` reads the completion count at this many evenly spaced moments of the window.
GRID_POINTS = 400


@dataclass(frozen=True)
class Steady:
    """Successful completions in the steady window and the rate they came at."""

    rps: float
    completions: int
    seconds: float
    method: Method

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_rate(timestamps_ns: Sequence[int], start_ns: int, end_ns: int) -> Steady | None:
    """The completion rate in [start_ns, end_ns]: the slope of a line fitted to the completion count N(t),
    read on an even grid of moments across the window.

    Requests that wait on threads or connections finish in bursts, and a count over a window is off by
    up to a burst at each end; a line through the whole staircase is not. Read on an even grid, every
    moment of the window weighs the same, so completions bunched in one corner of it (a pool handing its
    one connection round) cannot tilt the line as they would a fit through the completions themselves.
    None when fewer than ``MIN_COMPLETIONS`` completions fall in the window.
    """
    times = np.sort(np.asarray([t for t in timestamps_ns if start_ns <= t <= end_ns], dtype=np.float64))
    if len(times) < MIN_COMPLETIONS or end_ns <= start_ns:
        return None
    moments = np.linspace(float(start_ns), float(end_ns), GRID_POINTS)
    counts = np.searchsorted(times, moments, side="right").astype(np.float64)
    slope = float(np.polyfit((moments - start_ns) / 1e9, counts, 1)[0])
    return Steady(slope, len(times), (end_ns - start_ns) / 1e9, "completion log")


_GNUPLOT_ROW = re.compile(r"^[^\t]*\t(\d+)\t(\d+)\t(\d+)\t(\d+)\t(\d+)$", re.MULTILINE)


def parse_gnuplot(text: str) -> list[tuple[int, int]]:
    """ab's ``-g`` file: (start, in whole epoch seconds; total time, ms) per completed request."""
    return [(int(start), int(total)) for start, _ctime, _dtime, total, _wait in _GNUPLOT_ROW.findall(text)]


def gnuplot_window(rows: Sequence[tuple[int, int]], warm_until_s: float, stopped_s: float) -> Steady | None:
    """Requests started per second over the whole epoch seconds between ``warm_until_s`` and the last
    moment a request could start and still finish before ab stopped at ``stopped_s``.

    A request that started before the stop but had not finished is not in ``-g``; none took longer than
    the slowest completed one, so the window ends that long (plus its second of rounding) before the stop.
    """
    if not rows:
        return None
    slowest_s = max(total for _, total in rows) / 1000 + 1
    first, last = math.ceil(warm_until_s), math.floor(stopped_s - slowest_s)
    if last <= first:
        return None
    started = sum(1 for start, _ in rows if first <= start < last)
    if started < MIN_COMPLETIONS:
        return None
    return Steady(started / (last - first), started, float(last - first), "ab -g whole seconds")
