"""The run's pictures, few and drawn from the report's own facts: the same numbers the tables show.

- **drivers.png**: the driver table as a forest plot, one panel per workload: each pooled driver's
  throughput over the reference's (psycopg2, sync), paired, with its 95% interval; a filled dot
  was measured side by side with the reference, a hollow one through it.
- **ping.png**: /ping's median while each case ran: does the case freeze the event loop?
- **sweep-throughput.png**: each swept case's rate against concurrency, measured, beside what the
  held-out model predicted for each point before looking at it (``heldout``).
- **rtt.png**: async over sync as the database moves away, with intervals and the model's ratio.

A plot without data is skipped, so a partial run still gets the plots it can have. One colour
per route style throughout. matplotlib runs on the Agg backend: nothing is ever displayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from loadtests.choices import DriverWorkload  # noqa: E402
from loadtests.facts import Facts, style_rank, workload_rank  # noqa: E402
from loadtests.production import WIN  # noqa: E402
from loadtests.results import Record  # noqa: E402
from loadtests.stats import median  # noqa: E402
from loadtests.summary import CaseSummary, main_cases  # noqa: E402

STYLE_COLORS = {
    "sync": "#1f77b4",
    "async-blocking": "#d62728",
    "async": "#2ca02c",
    "threadpool": "#ff7f0e",
    "threadpool-only": "#9467bd",
    "minimal": "#17becf",
}
OTHER_COLOR = "#7f7f7f"
#: Line styles telling apart drivers of one style in the sweep plots.
DASHES = ("-", "--", "-.", ":")
DPI = 110

DRIVERS = "drivers.png"
PING = "ping.png"
SWEEP_THROUGHPUT = "sweep-throughput.png"
RTT = "rtt.png"

CAPTIONS = {
    DRIVERS: "Each pooled driver's throughput over psycopg2's (sync), per workload, paired, with its 95% interval: "
    "filled dots measured side by side with psycopg2, hollow ones through it; \"fastest\" only where the ratio to "
    "the runner-up excludes 1",
    PING: "/ping's median latency while each case ran (open-loop probe), per route style: the median over the style's "
    "drivers, the whisker from the lowest to the highest; a long bar means the event loop was frozen (or the CPU "
    "saturated); the tick is W, the route's own request alone",
    SWEEP_THROUGHPUT: "Throughput vs concurrency for the swept cases: measured (dots and lines) and what the held-out "
    "model predicted for each point before it was measured (hollow diamonds)",
    RTT: "Async over sync as the database moves away (wire proxy), paired at each round-trip time with its 95% interval; "
    "hollow diamonds the model's ratio; the dashed line the 1.5x a crossover needs",
}


def color(style: str) -> str:
    return STYLE_COLORS.get(style, OTHER_COLOR)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2g}"


#: Ticks a ratio axis may carry, the ones inside its limits shown.
RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4, 5, 10, 20, 50, 100)


def _ratio_axis(ax: Axes, limits: tuple[float, float], axis: str = "x") -> None:
    """A log axis labelled in plain ratios (0.5, 1, 2), not powers of ten."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    # Ticks at least an eighth of the axis apart (on the log scale), 1 always among them, so labels never collide.
    gap = math.log(limits[1] / limits[0]) / 8
    ticks = [1.0] if limits[0] <= 1 <= limits[1] else []
    for tick in sorted((t for t in RATIO_TICKS if limits[0] <= t <= limits[1]), key=lambda t: abs(math.log(t))):
        if all(abs(math.log(tick / kept)) >= gap for kept in ticks):
            ticks.append(tick)
    target.set_major_locator(FixedLocator(sorted(ticks)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_locator(NullLocator())


def _style_legend(styles: set[str]) -> list[Any]:
    return [Patch(color=color(s), label=s) for s in sorted(styles, key=style_rank)]


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_drivers(path: Path, found: Facts) -> Path | None:
    """The forest plot of the driver table: one panel per workload, the drivers in the table's order."""
    table = found.drivers
    if table is None or not any(e.ratio for w in table.workloads for e in w.entries):
        return None
    panels = table.workloads
    rows = max(len(w.entries) for w in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(8.0, 4.2 * len(panels) + 0.6), max(3.4, rows * 0.32 + 1.7)),
                             layout="constrained", squeeze=False)
    for ax, workload in zip(axes[0], panels, strict=True):
        low, high = _forest_limits(workload)
        for y, entry in enumerate(workload.entries):
            colour = color(entry.style)
            if entry.reference:
                ax.plot(1.0, y, marker="s", color=colour, markersize=6)
                continue
            if entry.ratio is None:
                ax.text(low, y, "  not paired", va="center", fontsize=7, color="#b00000")
                continue
            ratio = entry.ratio.interval
            if ratio.bounded:
                ax.plot([ratio.low, ratio.high], [y, y], color=colour, linewidth=2)
            side = entry.ratio.through is None
            ax.plot(ratio.center, y, marker="o", markersize=6, color=colour, markerfacecolor=colour if side else "white")
            ax.annotate(f"{ratio.center:.3g}", (ratio.center, y), xytext=(0, 5), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7, color="#333333")
        ax.axvline(1.0, color="#555555", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(low, high)
        _ratio_axis(ax, (low, high))
        ax.set_yticks(range(len(workload.entries)),
                      [("★ fastest: " if e.fastest else "") + f"{e.driver} ({e.style})" for e in workload.entries], fontsize=8)
        for label, entry in zip(ax.get_yticklabels(), workload.entries, strict=True):
            if entry.fastest:
                label.set_fontweight("bold")
                label.set_color("#8a6500")
        ax.set_ylim(rows - 0.5, -0.5)  # one row height in every panel
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.set_title(f"{workload.workload}: over {workload.reference}", fontsize=9, loc="left", style="italic")
        ax.set_xlabel("throughput ratio (log scale)")
    handles = _style_legend({e.style for w in panels for e in w.entries}) + [
        Line2D([], [], marker="o", color="#444444", linestyle="none", label="side by side with psycopg2"),
        Line2D([], [], marker="o", color="#444444", markerfacecolor="white", linestyle="none", label="through psycopg2"),
        Line2D([], [], marker="s", color="#444444", linestyle="none", label="the reference"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles) if len(panels) > 1 else 3, fontsize=8,
               frameon=False)
    fig.suptitle("Drivers on equal terms: throughput over psycopg2's, paired (95% intervals)", fontsize=11)
    return _save(fig, path)


def _forest_limits(workload: DriverWorkload) -> tuple[float, float]:
    """A panel's ratio axis: every interval, but no wider than 4x either side of the centres (an interval that
    runs further is cut at the edge; the table gives it whole)."""
    centres = [1.0, *(e.ratio.interval.center for e in workload.entries if e.ratio)]
    ends = [v for e in workload.entries if e.ratio and e.ratio.interval.bounded for v in (e.ratio.interval.low, e.ratio.interval.high)]
    low = max(min([*centres, *ends]), min(centres) / 4)
    high = min(max([*centres, *ends]), max(centres) * 4)
    return low / 1.15, high * 1.15


@dataclass(frozen=True)
class PingRow:
    """/ping under one route style of one workload: the median over its drivers, and their lowest and highest."""

    label: str
    style: str
    median: float
    low: float
    high: float
    drivers: int
    uncontended_ms: float | None


def _ping_rows(cases: list[CaseSummary]) -> list[tuple[str, list[PingRow]]]:
    grouped: dict[str, dict[tuple[str, str], list[CaseSummary]]] = {}
    for case in cases:
        file = case.case.split("[", 1)[1].rstrip("]").removesuffix(".bin") if "[" in case.case else ""
        grouped.setdefault(case.workload, {}).setdefault((case.style, file), []).append(case)
    panels = []
    for workload in sorted(grouped, key=lambda w: (workload_rank(w), w)):
        rows = []
        for (style, file), members in sorted(grouped[workload].items(), key=lambda item: (style_rank(item[0][0]), item[0][1])):
            pings = sorted(p.center for c in members if (p := c.ping_p50))
            if not pings:
                continue
            w = median([u for c in members if (u := c.uncontended_ms)])
            rows.append(PingRow(style + (f" [{file}]" if file else ""), style, float(median(pings) or pings[0]), pings[0],
                                pings[-1], len(pings), w))
        if rows:
            panels.append((workload, rows))
    return panels


def plot_ping(path: Path, records: list[Record]) -> Path | None:
    """/ping's median while each case ran, one bar per route style of each workload (the median over its drivers,
    whiskers from the lowest to the highest driver), and W, one request alone: does the style freeze the loop?"""
    panels = _ping_rows(main_cases(records))
    if not panels:
        return None
    half = (sum(len(rows) + 2 for _, rows in panels) + 1) // 2
    columns: list[list[tuple[str, list[PingRow]]]] = [[], []]
    count = 0
    for panel in panels:
        columns[0 if count < half else 1].append(panel)
        count += len(panel[1]) + 2
    columns = [column for column in columns if column]
    height = max(3.0, max(sum(len(rows) + 1.6 for _, rows in column) for column in columns) * 0.25 + 1.3)
    fig = plt.figure(figsize=(12 if len(columns) > 1 else 7, height), layout="constrained")
    subfigs: list[Figure | SubFigure] = list(fig.subfigures(1, len(columns), squeeze=False)[0]) if len(columns) > 1 else [fig]
    values = [v for _, rows in panels for row in rows for v in (row.low, row.high, row.uncontended_ms) if v]
    limits = (min(values) / 1.6, max(values) * 3)
    for sub, column in zip(subfigs, columns, strict=True):
        axes = sub.subplots(len(column), 1, squeeze=False, gridspec_kw={"height_ratios": [len(rows) + 0.6 for _, rows in column]})
        for ax, (workload, rows) in zip(axes[:, 0], column, strict=True):
            for y, row in enumerate(rows):
                ax.barh(y, row.median, color=color(row.style), height=0.7)
                if row.drivers > 1:
                    ax.plot([row.low, row.high], [y, y], color="#222222", linewidth=1)
                ax.text(row.high, y, f"  {_fmt(row.median)}" + (f" ({row.drivers} drivers)" if row.drivers > 1 else ""),
                        va="center", fontsize=7)
                if row.uncontended_ms:
                    ax.plot(row.uncontended_ms, y, linestyle="none", marker="|", markersize=10, markeredgewidth=1.6,
                            color="#333333")
            ax.set_xscale("log")
            ax.set_xlim(*limits)
            ax.set_yticks(range(len(rows)), [row.label for row in rows], fontsize=8)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.grid(axis="x", which="major", alpha=0.35)
            ax.set_title(workload, fontsize=9, loc="left", style="italic")
        axes[-1, 0].set_xlabel("/ping median while the case ran, ms (log scale)")
    handles = _style_legend({row.style for _, rows in panels for row in rows}) + [
        Line2D([], [], linestyle="none", marker="|", markersize=10, markeredgewidth=1.6, color="#333333",
               label="W: the route's own request alone"),
        Line2D([], [], color="#222222", linewidth=1, label="lowest to highest driver")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("Does the route style freeze the event loop? /ping's median while it runs (long bar: frozen loop)",
                 fontsize=11)
    return _save(fig, path)


def _knees(run: dict[str, Any], cases: list[CaseSummary]) -> list[tuple[int, str]]:
    """(concurrency, label) of each threadpool and pool size the swept cases run into."""
    servers = run.get("servers") or []
    found: dict[int, set[str]] = {}
    for case in cases:
        record = case.records[-1]
        server = servers[record.get("server", 0)] if 0 <= record.get("server", 0) < len(servers) else {}
        if record.get("style") in ("sync", "threadpool", "threadpool-only") and (tokens := server.get("threadpool_tokens")):
            found.setdefault(int(tokens), set()).add("threadpool")
        for driver in (record.get("driver"), record.get("twin")):
            pool = (server.get("pools") or {}).get(driver) if driver else None
            if isinstance(pool, dict) and pool.get("max"):
                found.setdefault(int(pool["max"]), set()).add(f"{driver} pool")
    return [(c, " = ".join([", ".join(sorted(names)), str(c)])) for c, names in sorted(found.items())]


def plot_sweep(path: Path, found: Facts) -> Path | None:
    """Measured rate per concurrency, and the held-out prediction of each point."""
    series = {case: [(row.case.concurrency, row.case.rps.center, row) for row in rows if row.case.rps]
              for case, rows in found.sweeps.items()}
    series = {case: points for case, points in series.items() if points}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(10.5, 5.6), layout="constrained")
    dashes: dict[str, int] = {}
    values: list[float] = []
    for case, points in sorted(series.items(), key=lambda item: (style_rank(item[1][0][2].case.style), item[0])):
        style = points[0][2].case.style
        dash = DASHES[dashes.setdefault(style, 0) % len(DASHES)]
        dashes[style] += 1
        xs, ys = [c for c, _, _ in points], [v for _, v, _ in points]
        values += ys
        ax.plot(xs, ys, marker="o", color=color(style), linestyle=dash, label=case, linewidth=1.8)
        predicted = [(c, row.point.prediction.rps) for c, _, row in points if row.point and row.point.prediction]
        if predicted:
            ax.plot([c for c, _ in predicted], [v for _, v in predicted], linestyle="none", marker="D", markersize=6,
                    color=color(style), markerfacecolor="white", markeredgewidth=1.3)
            values += [v for _, v in predicted]
    ax.set_xscale("log")
    if max(values) / min(values) > 30:
        ax.set_yscale("log")
    levels = sorted({c for points in series.values() for c, _, _ in points})
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.xaxis.set_minor_locator(NullLocator())
    swept = [row.case for rows in found.sweeps.values() for row in rows]
    for position, (c, label) in enumerate(_knees(found.run, swept)):
        ax.axvline(c, linestyle="--", color="#555555", linewidth=1.0)
        ax.annotate(label, (c, 1 - 0.06 * (position % 4)), xycoords=("data", "axes fraction"), xytext=(3, -3),
                    textcoords="offset points", va="top", fontsize=8, color="#555555")
    ax.grid(which="major", alpha=0.3)
    ax.set_xlabel("concurrent clients c (log scale)")
    ax.set_ylabel("successful requests per second, " + ("ab's whole run" if found.samples.whole_run else "steady state"))
    ax.set_title("Throughput vs concurrency: measured (lines), held-out prediction (hollow diamonds)", fontsize=11)
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="D", color="#444444", markerfacecolor="white", linestyle="none",
                          label="held-out prediction"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _save(fig, path)


def plot_rtt(path: Path, found: Facts) -> Path | None:
    """Async over sync against the added RTT, one panel per workload, with the crossover line."""
    series = found.rtt
    if series is None or not any(p.ratio for x in series.crossovers for p in x.points):
        return None
    workloads = sorted({x.workload for x in series.crossovers}, key=workload_rank)
    fig, axes = plt.subplots(1, len(workloads), figsize=(max(8.0, 4.6 * len(workloads) + 0.8), 4.6), layout="constrained",
                             squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        for index, crossing in enumerate(x for x in series.crossovers if x.workload == workload):
            dash = DASHES[index % len(DASHES)]
            colour = ("#2ca02c", "#8c564b", "#1f77b4")[index % 3]
            label = f"{crossing.asynchronous.split('/')[-1]} / {crossing.synchronous.split('/')[-1]}"
            measured = [(p.rtt_ms, p.ratio) for p in crossing.points if p.ratio]
            xs = [rtt for rtt, _ in measured]
            ax.plot(xs, [r.center for _, r in measured], marker="o", color=colour, linestyle=dash, label=label)
            for rtt, r in measured:
                if r.bounded:
                    ax.plot([rtt, rtt], [r.low, r.high], color=colour, linewidth=2, alpha=0.6)
            model = [(p.rtt_ms, p.predicted) for p in crossing.points if p.predicted]
            ax.plot([x for x, _ in model], [v for _, v in model], linestyle="none", marker="D", markersize=5,
                    color=colour, markerfacecolor="white")
        ax.axhline(WIN, linestyle="--", color="#555555", linewidth=1)
        ax.axhline(1.0, color="#999999", linewidth=0.8)
        ax.set_yscale("log")
        shown = [v for x in series.crossovers if x.workload == workload for p in x.points
                 for v in ((p.ratio.low, p.ratio.high) if p.ratio and p.ratio.bounded else (p.ratio.center,) if p.ratio else ())]
        shown += [p.predicted for x in series.crossovers if x.workload == workload for p in x.points if p.predicted]
        limits = (min([*shown, 1.0]) / 1.2, max([*shown, WIN]) * 1.2)
        ax.set_ylim(*limits)
        _ratio_axis(ax, limits, "y")
        ax.set_title(workload, fontsize=10, style="italic", loc="left")
        ax.set_xlabel("added round-trip time to Postgres, ms")
        ax.grid(which="major", alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], marker="D", color="#444444", markerfacecolor="white", linestyle="none",
                              label="the model's ratio"))
        ax.legend(handles=handles, fontsize=7, frameon=False)
    axes[0][0].set_ylabel("async / sync throughput (log scale)")
    fig.suptitle("Where async starts to pay: async over sync, paired at each RTT (dashed: 1.5x)", fontsize=11)
    return _save(fig, path)


def draw_plots(folder: Path, found: Facts, records: list[Record]) -> list[Path]:
    """Write every plot the facts allow into ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [plot_drivers(folder / DRIVERS, found), plot_ping(folder / PING, records),
               plot_sweep(folder / SWEEP_THROUGHPUT, found), plot_rtt(folder / RTT, found)]
    return [path for path in written if path is not None]
