"""The run's pictures: throughput and /ping latency per case, and the concurrency sweeps.

Every plot reads the run through ``summary`` (the same numbers the tables show) and writes
a PNG into the run folder; a plot without data is skipped, so a partial run still gets the
plots it can have. One colour per route style, the same in every plot. Per-case charts are
small multiples, one panel per workload; a bar is the measurement (with its 95% interval)
and the hollow diamond Little's law's prediction, which carries no number of its own.
matplotlib runs on the Agg backend: nothing is ever displayed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from loadtests.facts import style_rank, workload_rank  # noqa: E402
from loadtests.results import Record  # noqa: E402
from loadtests.stats import Interval  # noqa: E402
from loadtests.summary import CaseSummary, main_cases, rtt_cases, sweep_cases  # noqa: E402

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
ROW_INCHES = 0.24

THROUGHPUT = "throughput.png"
PING = "ping.png"
SWEEP_THROUGHPUT = "sweep-throughput.png"
SWEEP_P99 = "sweep-p99.png"
RTT = "rtt.png"

CAPTIONS = {
    THROUGHPUT: "Throughput per case, one panel per workload: bars measured (successful responses, 95% interval), "
    "hollow diamonds predicted by Little's law",
    PING: "/ping median latency while each case ran (open-loop probe): a long bar means the event loop was frozen "
    "(or the CPU saturated); the tick is W, one request alone",
    SWEEP_THROUGHPUT: "Throughput vs concurrency for the swept cases, with the threadpool and pool sizes",
    SWEEP_P99: "p99 latency vs concurrency for the swept cases",
    RTT: "Throughput vs the round-trip time to Postgres (wire proxy), one panel per workload: colour = route style, "
    "line style = driver",
}


def color(style: str) -> str:
    return STYLE_COLORS.get(style, OTHER_COLOR)


def _label(case: CaseSummary) -> str:
    file = case.case.split("[", 1)[1].rstrip("]").removesuffix(".bin") if "[" in case.case else ""
    return f"{case.style} · {case.driver}" + (f" [{file}]" if file else "")


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2g}"


def _style_legend(styles: set[str]) -> list[Any]:
    return [Patch(color=color(s), label=s) for s in sorted(styles, key=style_rank)]


def _panels(cases: list[CaseSummary]) -> list[tuple[str, list[CaseSummary]]]:
    grouped: dict[str, list[CaseSummary]] = {}
    for case in cases:
        grouped.setdefault(case.workload, []).append(case)
    return [(w, sorted(grouped[w], key=lambda c: (style_rank(c.style), c.driver, c.case)))
            for w in sorted(grouped, key=lambda w: (workload_rank(w), w))]


def _columns(panels: list[tuple[str, list[CaseSummary]]]) -> list[list[tuple[str, list[CaseSummary]]]]:
    """Two columns of panels, balanced by row count, each keeping the workloads' order."""
    total = sum(len(rows) + 2 for _, rows in panels)
    left, count = [], 0
    for panel in panels:
        if count and count + len(panel[1]) / 2 > total / 2:
            break
        left.append(panel)
        count += len(panel[1]) + 2
    return [left, panels[len(left):]] if panels[len(left):] else [left]


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _per_case(path: Path, cases: list[CaseSummary], measure: Callable[[CaseSummary], Interval | None],
              marker: Callable[[CaseSummary], float | None], marker_label: str, marker_style: dict[str, Any],
              xlabel: str, title: str) -> Path | None:
    """Small multiples: per workload, a bar per case (with its interval) and one marker per case."""
    if not any(measure(c) for c in cases):
        return None
    columns = _columns(_panels(cases))
    height = max(3.5, max(sum(len(rows) + 2 for _, rows in col) for col in columns) * ROW_INCHES + 1.2)
    fig = plt.figure(figsize=(13 if len(columns) > 1 else 8, height), layout="constrained")
    # squeeze=False: a row of subfigures whatever its length (its type is then an array, not a union).
    subfigs: list[Figure | SubFigure] = list(fig.subfigures(1, len(columns), squeeze=False)[0]) if len(columns) > 1 else [fig]
    values: list[float] = []
    for case in cases:
        if found := measure(case):
            values += [found.low, found.high] if found.bounded else [found.center]
        if expected := marker(case):
            values.append(expected)
    low, high = min(values) / 1.6, max(values) * 3
    for sub, column in zip(subfigs, columns, strict=True):
        axes = sub.subplots(len(column), 1, gridspec_kw={"height_ratios": [len(rows) + 1 for _, rows in column]})
        for ax, (workload, rows) in zip(axes if len(column) > 1 else [axes], column, strict=True):
            _panel(ax, workload, rows, measure, marker, marker_style, (low, high))
        (axes[-1] if len(column) > 1 else axes).set_xlabel(xlabel)
    handles = _style_legend({c.style for c in cases}) + [Line2D([], [], linestyle="none", label=marker_label, **marker_style)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _panel(ax: Axes, workload: str, rows: list[CaseSummary], measure: Callable[[CaseSummary], Interval | None],
           marker: Callable[[CaseSummary], float | None], marker_style: dict[str, Any], limits: tuple[float, float]) -> None:
    for y, case in enumerate(rows):
        found = measure(case)
        if found:
            error = [[found.center - found.low], [found.high - found.center]] if found.bounded else None
            ax.barh(y, found.center, color=color(case.style), height=0.7, xerr=error, error_kw={"elinewidth": 0.8, "capsize": 2})
            ax.text(found.high if found.bounded else found.center, y, "  " + _fmt(found.center), va="center", fontsize=7)
        else:
            ax.text(limits[0], y, "  no result" + (" (error)" if case.errors else ""), va="center", fontsize=7, color="#b00000")
        if (expected := marker(case)) is not None:
            ax.plot(expected, y, linestyle="none", zorder=3, **marker_style)
    ax.set_xscale("log")
    ax.set_xlim(*limits)
    ax.set_yticks(range(len(rows)), [_label(c) for c in rows], fontsize=7.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", which="major", alpha=0.35)
    ax.set_title(workload, fontsize=9, loc="left", style="italic")


def plot_throughput(path: Path, records: list[Record]) -> Path | None:
    cases = main_cases(records)
    c = sorted({case.concurrency for case in cases})
    return _per_case(path, cases, lambda s: s.rps, lambda s: s.predicted_rps, "predicted (Little's law)",
                     {"marker": "D", "markersize": 5, "color": "black", "markerfacecolor": "white"},
                     "successful requests per second (log scale)",
                     f"Throughput per case at c = {', '.join(map(str, c))}: bars measured, diamonds predicted")


def plot_ping(path: Path, records: list[Record]) -> Path | None:
    return _per_case(path, main_cases(records), lambda s: s.ping_p50, lambda s: s.uncontended_ms, "W: one request alone",
                     {"marker": "|", "markersize": 10, "markeredgewidth": 1.6, "color": "#333333"},
                     "/ping median latency during the case, ms (log scale)",
                     "Does the case freeze the event loop? /ping median while it runs (long bar = frozen loop)")


def _knees(run: dict[str, Any], sweeps: dict[str, list[CaseSummary]]) -> list[tuple[int, str]]:
    """(concurrency, label) of each threadpool and pool size the swept cases run into."""
    servers = run.get("servers") or []
    found: dict[int, set[str]] = {}
    for points in sweeps.values():
        record = points[-1].records[-1]
        server = servers[record.get("server", 0)] if 0 <= record.get("server", 0) < len(servers) else {}
        if record.get("style") in ("sync", "threadpool", "threadpool-only") and (tokens := server.get("threadpool_tokens")):
            found.setdefault(int(tokens), set()).add("threadpool")
        for driver in (record.get("driver"), record.get("twin")):
            pool = (server.get("pools") or {}).get(driver) if driver else None
            if isinstance(pool, dict) and pool.get("max"):
                found.setdefault(int(pool["max"]), set()).add(f"{driver} pool")
    return [(c, " = ".join([", ".join(sorted(names)), str(c)])) for c, names in sorted(found.items())]


def _sweep_plot(path: Path, run: dict[str, Any], sweeps: dict[str, list[CaseSummary]], metric: str) -> Path | None:
    def value(case: CaseSummary) -> float | None:
        found = case.rps if metric == "rps" else case.latency("p99_ms")
        return found.center if found else None

    series = {case: [(p.concurrency, v, p) for p in points if (v := value(p))] for case, points in sweeps.items()}
    series = {case: points for case, points in series.items() if points}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    dashes: dict[str, int] = {}
    values: list[float] = []
    for case, points in sorted(series.items(), key=lambda item: (style_rank(item[1][0][2].style), item[0])):
        style = points[0][2].style
        dash = DASHES[dashes.setdefault(style, 0) % len(DASHES)]
        dashes[style] += 1
        xs, ys = [c for c, _, _ in points], [v for _, v, _ in points]
        values += ys
        ax.plot(xs, ys, marker="o", color=color(style), linestyle=dash, label=case, linewidth=1.8)
        if metric == "rps":
            predicted = [(c, p.predicted_rps) for c, _, p in points if p.predicted_rps]
            ax.plot([c for c, _ in predicted], [v for _, v in predicted], linestyle="none", marker="D", markersize=4,
                    color=color(style), markerfacecolor="white")
            values += [v for _, v in predicted if v]
    ax.set_xscale("log")
    if max(values) / min(values) > 30:
        ax.set_yscale("log")
    levels = sorted({c for points in series.values() for c, _, _ in points})
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.xaxis.set_minor_locator(NullLocator())
    for position, (c, label) in enumerate(_knees(run, sweeps)):
        ax.axvline(c, linestyle="--", color="#555555", linewidth=1.0)
        ax.annotate(label, (c, 1 - 0.06 * (position % 4)), xycoords=("data", "axes fraction"), xytext=(3, -3),
                    textcoords="offset points", va="top", fontsize=8, color="#555555")
    ax.grid(which="major", alpha=0.3)
    ax.set_xlabel("concurrent clients c (log scale)")
    if metric == "rps":
        ax.set_ylabel("successful requests per second")
        ax.set_title("Throughput vs concurrency (lines measured, hollow diamonds predicted; colour = route style)")
    else:
        ax.set_ylabel("p99 latency, ms")
        ax.set_title("p99 latency vs concurrency: it climbs once a resource saturates (colour = route style)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _save(fig, path)


def plot_rtt(path: Path, records: list[Record]) -> Path | None:
    """Throughput against RTT, one panel per workload: where the styles and drivers cross as the database moves away."""
    series = rtt_cases(records)
    if not series:
        return None
    workloads = sorted({points[0].workload for points in series.values()}, key=workload_rank)
    fig, axes = plt.subplots(1, len(workloads), figsize=(5.2 * len(workloads), 4.8), layout="constrained", squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        dashes: dict[str, str] = {}
        for _case, points in sorted(series.items(), key=lambda item: (style_rank(item[1][0].style), item[0])):
            first = points[0]
            if first.workload != workload:
                continue
            dash = dashes.setdefault(first.driver, DASHES[len(dashes) % len(DASHES)])
            xs = [p.rtt_ms for p in points if p.rps]
            ys = [p.rps.center for p in points if p.rps]
            ax.plot(xs, ys, marker="o", color=color(first.style), linestyle=dash, label=f"{first.style} · {first.driver}")
        ax.set_yscale("log")
        ax.set_title(workload, fontsize=10, style="italic", loc="left")
        ax.set_xlabel("added round-trip time to Postgres, ms")
        ax.grid(which="major", alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("successful requests per second (log scale)")
    fig.suptitle("Throughput as the database moves away: the sync styles fall with every round trip they wait on", fontsize=11)
    return _save(fig, path)


def draw_plots(folder: Path, run: dict[str, Any], records: list[Record]) -> list[Path]:
    """Write every plot the records allow into ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [plot_throughput(folder / THROUGHPUT, records), plot_ping(folder / PING, records)]
    sweeps = sweep_cases(records)
    if sweeps:
        written += [_sweep_plot(folder / SWEEP_THROUGHPUT, run, sweeps, "rps"), _sweep_plot(folder / SWEEP_P99, run, sweeps, "p99")]
    written.append(plot_rtt(folder / RTT, records))
    return [path for path in written if path is not None]

