"""One steady-state sample: ab against one route, counted only in a window clear of its start-up.

The sample starts ab with far more requests than it will send, waits out a warm-up (by time:
ab's lone first request, its other connections opening, the server filling), then counts a
window: successful completions from the service's completion log (``app.completions``), the
CPU each part spent (``work.CpuMeter``, nanosecond clocks) and the /ping probes scheduled in
it. Then it stops ab, which reports the failures of the whole run. The figure of a sample is
its window's rate (``steady.window_rate``), so it does not depend on how many requests were
asked for: ``-n`` only sets how many completions the window waits for.

The load is one ab by default; ``generators`` ab processes split c between them (``generators.AbGroup``),
and another engine (Locust: ``locust_load.Swarm``) can make it instead. Whatever makes it, the window is
counted on the completion log, where several generators' completions add up.

Without a completion log (a target whose log this machine cannot read) the window is counted
from ab's ``-g`` file in whole seconds (``steady.gnuplot_window``), and samples last seconds.
The article's own method, ``ab -n 200 -c 100`` start to end, is ``whole_run``: its figure
includes the start-up and the drain, as the article's does.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from app.completions import route_key
from loadtests.ab import AbError, AbResult, run_ab
from loadtests.generators import AbGroup, GeneratorUse, Load, window_use
from loadtests.probe import PingProbe, PingSummary
from loadtests.steady import MIN_COMPLETIONS, Steady, gnuplot_window, parse_gnuplot, window_rate
from loadtests.work import CpuMeter, CpuPerRequest

#: The warm-up lasts at least this long, and at least ``WARM_LATENCIES`` uncontended latencies W.
WARM_MIN_S = 0.1
WARM_LATENCIES = 3
#: How often the harness looks at the completion log while a window runs.
POLL_S = 0.01
#: After ab stops, the service has drained its requests once no completion came for this long, or for
#: ``QUIET_LATENCIES`` W (a blocked event loop completes one request per W, slower on a busy machine).
QUIET_MIN_S = 0.03
QUIET_LATENCIES = 3
#: Draining gives up after this long: a service that keeps answering is not draining.
DRAIN_MAX_S = 30.0
#: Windows counted from ab's -g file need whole seconds inside them: at least this long.
GNUPLOT_WINDOW_S = 3.0
#: Whole seconds lost at the two ends of a ``-g`` window: the first partial second, and the second of rounding
#: ``gnuplot_window`` leaves before the slowest request's start.
GNUPLOT_ROUNDING_S = 2.0


class Mark(Protocol):
    """A completion log's counts at one moment (``app.completions.Mark``)."""

    @property
    def ok(self) -> int: ...

    @property
    def other(self) -> int: ...


class CompletionSource(Protocol):
    """What a sample needs of ``app.completions.CompletionLog``."""

    def snapshot(self) -> Any: ...

    def entries_since(self, mark: Any) -> list[tuple[int, int]]: ...


@dataclass(frozen=True)
class Window:
    """How long a sample lasts: a warm-up discarded by time, then a window of at least ``seconds``, long
    enough for ``completions`` successful completions at the expected rate (at most ``max_seconds``, and for
    the count's sake at most ``count_max_s``); after it, the requests still in flight drain until the service
    has been quiet for ``quiet_s``."""

    warm_s: float
    seconds: float
    completions: int
    max_seconds: float
    quiet_s: float = 0.05
    count_max_s: float = math.inf

    @classmethod
    def for_case(cls, latency_s: float, seconds: float, completions: int, max_seconds: float = 10.0,
                 count_max_s: float = math.inf) -> Window:
        return cls(max(WARM_MIN_S, WARM_LATENCIES * latency_s), seconds, completions, max_seconds,
                   max(QUIET_MIN_S, QUIET_LATENCIES * latency_s), count_max_s)

    def planned_s(self, expected_rps: float) -> float:
        """The window's length, set before it opens: ``seconds``, or long enough for ``completions``."""
        counted = min(self.completions / max(expected_rps, 1e-3), self.count_max_s)
        return min(max(self.seconds, counted), self.max_seconds)


@dataclass(frozen=True)
class Sample:
    """One sample: ab's report of the whole run (its failures), the steady window's rate and CPU."""

    ab: AbResult
    steady: Steady | None
    cpu: CpuPerRequest | None
    ping: PingSummary | None
    warm_s: float
    window_s: float
    wall_s: float
    #: Non-2xx answers the service logged inside the window (None without a completion log).
    other_in_window: int | None
    #: Successful completions of other routes inside the window (left in flight by an earlier sample), not counted.
    foreign_in_window: int | None
    #: Service CPU seconds per wall second in the window (the utilisation law: ~1 per worker is saturated).
    utilisation: float | None
    #: The load generators: engine, how many, each one's CPU in the window.
    generators: GeneratorUse | None = None

    @property
    def rps(self) -> float | None:
        return self.steady.rps if self.steady else None

    def to_dict(self) -> dict[str, Any]:
        return {"steady": self.steady.to_dict() if self.steady else None, "warm_s": self.warm_s,
                "window_s": self.window_s, "wall_s": self.wall_s, "other_in_window": self.other_in_window,
                "foreign_in_window": self.foreign_in_window}


def _requests_cap(concurrency: int, expected_rps: float, window: Window) -> int:
    """ab's -n: more than the sample can use (ab stops at our signal), bounded so its tables stay small."""
    planned = expected_rps * (window.warm_s + window.max_seconds) * 2
    return int(min(1_000_000, max(1_000, 4 * concurrency, planned)))


class LoadFactory(Protocol):
    """Makes the load of one sample (another engine than ab: ``locust_load.Swarm.load``)."""

    def __call__(self, url: str, concurrency: int, *, keepalive: bool, timeout_s: float) -> Load: ...


def steady_sample(url: str, concurrency: int, window: Window, *, log: CompletionSource | None,
                  meter: CpuMeter, expected_rps: float, keepalive: bool = False, probe: PingProbe | None = None,
                  timeout_s: float = 30.0, generators: int = 1, engine: LoadFactory | None = None) -> Sample:
    """ab (``generators`` processes splitting c, or ``engine``'s load) against ``url`` at ``concurrency`` clients,
    counted in a steady window (see the module docstring).

    ``probe`` is a /ping probe already running on the service: the sample keeps the probes scheduled in its window."""
    if log is None:
        # ``gnuplot_window`` counts whole seconds and ends a slowest request (about c / X) plus a second before
        # the stop: ab runs that much longer, so the seconds it counts are still GNUPLOT_WINDOW_S.
        seconds = GNUPLOT_WINDOW_S + GNUPLOT_ROUNDING_S + concurrency / max(expected_rps, 1e-3)
        window = dataclasses.replace(window, seconds=max(window.seconds, seconds),
                                     max_seconds=max(window.max_seconds, seconds))
    made: Load = engine(url, concurrency, keepalive=keepalive, timeout_s=timeout_s) if engine is not None else \
        AbGroup(url, _requests_cap(concurrency, expected_rps, window), concurrency, generators, keepalive=keepalive,
                timeout_s=timeout_s, gnuplot=log is None)
    with made as load:
        time.sleep(window.warm_s)
        opened, cpu_before, gen_before = time.monotonic_ns(), meter.read(load.pids), load.generator_cpu()
        demand_before = load.generator_demand()
        mark = log.snapshot() if log is not None else None
        # The window ends at a moment set in advance, never at a completion: a window that closed on its
        # n-th completion would end on a burst and count it whole. Too few completions double it, again at
        # a set moment, up to max_seconds.
        planned = window.planned_s(expected_rps)
        while not load.finished:
            elapsed = (time.monotonic_ns() - opened) / 1e9
            if elapsed >= planned:
                done = log.snapshot().ok - mark.ok if log is not None and mark is not None else math.inf
                if done >= MIN_COMPLETIONS or planned >= window.max_seconds:
                    break
                planned = min(2 * planned, window.max_seconds)
            time.sleep(min(POLL_S, max(0.0, planned - elapsed)))
        closed, cpu_after, gen_after = time.monotonic_ns(), meter.read(load.pids), load.generator_cpu()
        demand_after = load.generator_demand()
        end_mark = log.snapshot() if log is not None else None
        result = load.stop()
        # ab dropped its requests in flight, but the service still serves them (a blocked loop, a full
        # threadpool): the next sample must not find them in its way.
        drain(log, window.quiet_s, concurrency * window.quiet_s)
        wall_s = (time.monotonic_ns() - load.started_ns) / 1e9
        if log is not None and mark is not None and end_mark is not None:
            route = route_key(urlsplit(url).path)
            entries = [(ns, key) for ns, key in log.entries_since(mark) if opened <= ns <= closed]
            steady = window_rate([ns for ns, key in entries if key == route], opened, closed)
            other = end_mark.other - mark.other
            foreign: int | None = sum(1 for _, key in entries if key != route)
        else:
            steady = gnuplot_window(parse_gnuplot(load.gnuplot_text()), load.started_epoch + window.warm_s,
                                    load.stopped_epoch)
            other = foreign = None
    seconds = (closed - opened) / 1e9
    use = window_use(load, gen_before, gen_after, seconds, demand_before, demand_after)
    counted = steady.rps * seconds if steady else 0
    cpu = CpuMeter.per_request(cpu_before, cpu_after, round(counted)) if counted >= 1 else None
    busy = cpu_after.service - cpu_before.service if cpu_after.service is not None and cpu_before.service is not None else None
    ping = probe.window(opened / 1e9, closed / 1e9) if probe is not None else None
    return Sample(result, steady, cpu, ping, window.warm_s, seconds, wall_s, other, foreign,
                  busy / seconds if busy is not None and seconds > 0 else None, use)


def drain(log: CompletionSource | None, quiet_s: float, expected_s: float) -> None:
    """Wait until the service has completed nothing for ``quiet_s``: the requests a stopped ab left behind are done.

    Without a completion log there is nothing to watch: wait ``expected_s`` (c requests of W each, at most)."""
    if log is None:
        time.sleep(min(DRAIN_MAX_S, expected_s))
        return

    def total() -> int:
        mark = log.snapshot()
        return int(mark.ok + mark.other)

    last, still_since = total(), time.monotonic()
    deadline = still_since + DRAIN_MAX_S
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        now = total()
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet_s:
            return


def whole_run(url: str, requests: int, concurrency: int, *, meter: CpuMeter, keepalive: bool = False,
              probe: PingProbe | None = None, timeout_s: float = 30.0, time_limit_s: float | None = None) -> Sample:
    """The article's method: ``ab -n requests -c concurrency`` start to end; its rate includes the start-up."""
    before = meter.read()
    started = time.monotonic()
    result = run_ab(url, requests, concurrency, keepalive=keepalive, timeout_s=timeout_s, time_limit_s=time_limit_s)
    wall_s = time.monotonic() - started
    after = meter.read()
    cpu = CpuMeter.per_request(before, after, result.successful)
    busy = after.service - before.service if after.service is not None and before.service is not None else None
    return Sample(result, None, cpu, probe.window(started, started + wall_s) if probe is not None else None, 0.0, wall_s,
                  wall_s, None, None,
                  busy / wall_s if busy is not None and wall_s > 0 else None)


__all__ = ["AbError", "CompletionSource", "LoadFactory", "Sample", "Window", "steady_sample", "whole_run"]
