"""The run's pictures: throughput and /ping latency per case, and the concurrency sweeps.

Every function reads measurement records as ``results.py`` describes them and writes PNGs
into the run folder; a plot without data is skipped, so a partial run still gets the plots
it can have. matplotlib runs on the Agg backend: nothing is ever displayed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from loadtests.results import is_main  # noqa: E402

#: The catalogue's workloads, in the order reports present them.
WORKLOAD_ORDER = ("wait", "pg_sleep", "lookup", "report", "write", "file", "hello")
STYLE_ORDER = ("sync", "async-blocking", "async", "threadpool", "threadpool-only")
STYLE_COLORS = {
    "sync": "#1f77b4",
    "async-blocking": "#d62728",
    "async": "#2ca02c",
    "threadpool": "#ff7f0e",
    "threadpool-only": "#9467bd",
}
OTHER_COLOR = "#7f7f7f"
DPI = 110

THROUGHPUT = "throughput.png"
PING = "ping.png"
SWEEP_THROUGHPUT = "sweep-throughput.png"
SWEEP_P99 = "sweep-p99.png"


# --- reading records ---------------------------------------------------------------------------


def main_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last main measurement (``results.is_main``) of each case, in measurement order."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if is_main(record):
            latest.pop(record["case"], None)
            latest[record["case"]] = record
    return list(latest.values())


def sweep_records(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Sweep measurements by case, each sorted by concurrency (the last one wins per level)."""
    by_case: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        if record.get("sweep"):
            by_case.setdefault(record["case"], {})[int(record["concurrency"])] = record
    return {case: [levels[c] for c in sorted(levels)] for case, levels in by_case.items()}


def rps(record: dict[str, Any]) -> float | None:
    value = (record.get("ab") or {}).get("requests_per_second")
    return value if value is not None and value > 0 else None


def predicted_rps(record: dict[str, Any]) -> float | None:
    value = (record.get("model") or {}).get("rps")
    return value if value is not None and value > 0 else None


def workload_rank(workload: str | None) -> int:
    return WORKLOAD_ORDER.index(workload) if workload in WORKLOAD_ORDER else len(WORKLOAD_ORDER)


def style_rank(style: str | None) -> int:
    return STYLE_ORDER.index(style) if style in STYLE_ORDER else len(STYLE_ORDER)


def ordered_by_workload(records: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Records grouped by workload (catalogue order); fastest first within each group."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record.get("workload") or "other", []).append(record)
    ordered = sorted(groups.items(), key=lambda item: (workload_rank(item[0]), item[0]))
    return [
        (workload, sorted(group, key=lambda r: (-(rps(r) or 0.0), style_rank(r.get("style")), r["case"])))
        for workload, group in ordered
    ]


def server_of(run: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    servers = run.get("servers") or []
    index = record.get("server")
    if isinstance(index, int) and 0 <= index < len(servers):
        return servers[index] or {}
    return {}


def threadpool_of(run: dict[str, Any], record: dict[str, Any]) -> int | None:
    tokens = server_of(run, record).get("threadpool_tokens", record.get("threadpool_tokens"))
    return int(tokens) if tokens else None


def pools_of(run: dict[str, Any], record: dict[str, Any]) -> dict[str, int]:
    """Pool max of each pooled driver the record's route uses (its own and its threadpool twin)."""
    pools = server_of(run, record).get("pools") or {}
    found: dict[str, int] = {}
    for driver in (record.get("driver"), record.get("twin")):
        info = pools.get(driver) if driver else None
        if isinstance(info, dict) and info.get("max"):
            found[driver] = int(info["max"])
    return found


# --- drawing -----------------------------------------------------------------------------------


def _style_legend(styles: set[str]) -> list[Any]:
    return [Patch(color=STYLE_COLORS.get(s, OTHER_COLOR), label=s) for s in sorted(styles, key=style_rank)]


def _rows(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[str, int, int]]]:
    """Top-to-bottom bar order, and each workload's span of rows."""
    rows: list[dict[str, Any]] = []
    spans = []
    for workload, group in ordered_by_workload(records):
        spans.append((workload, len(rows), len(rows) + len(group) - 1))
        rows.extend(group)
    return rows, spans


def _bar_figure(count: int) -> tuple[Figure, Any]:
    height = max(3.0, 0.3 * count + 1.8)
    fig, ax = plt.subplots(figsize=(11, height))
    return fig, ax


def _decorate_groups(ax: Any, spans: list[tuple[str, int, int]]) -> None:
    """Separators between workloads and the workload's name at the right edge."""
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    for number, (workload, first, last) in enumerate(spans):
        if number:
            ax.axhline(first - 0.5, color="#999999", linewidth=0.8)
        ax.text(0.995, (first + last) / 2, workload, transform=trans, ha="right", va="center",
                fontsize=9, color="#555555", style="italic",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})


def _mark_missing(ax: Any, y: int, text: str) -> None:
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    ax.text(0.005, y, text, transform=trans, ha="left", va="center", fontsize=8, color="#b00000")


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2g}" if value < 1 else f"{value:.2f}"


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_throughput(path: Path, records: list[dict[str, Any]]) -> Path | None:
    """Measured rps per main case as bars (by style), the model's prediction as a marker."""
    records = main_records(records)
    if not any(rps(r) for r in records):
        return None
    rows, spans = _rows(records)
    fig, ax = _bar_figure(len(rows))
    ys = list(range(len(rows)))
    for y, record in zip(ys, rows, strict=True):
        measured, predicted = rps(record), predicted_rps(record)
        color = STYLE_COLORS.get(record.get("style") or "", OTHER_COLOR)
        if measured:
            ax.barh(y, measured, color=color, height=0.7)
        if predicted:
            ax.plot(predicted, y, marker="D", markersize=5, color="black", markerfacecolor="white", linestyle="none")
        if measured:
            ax.text(max(measured, predicted or 0) * 1.12, y, _fmt(measured), va="center", fontsize=7.5)
        else:
            _mark_missing(ax, y, "error: no result" if record.get("error") else "no result")
    values = [v for r in rows for v in (rps(r), predicted_rps(r)) if v]
    _log_bar_axes(ax, rows, values, spans)
    ax.set_xlabel("requests per second (log scale)")
    concurrencies = sorted({r["concurrency"] for r in rows if r.get("concurrency")})
    at = f" at c = {', '.join(map(str, concurrencies))}" if concurrencies else ""
    ax.set_title(f"Throughput per case{at}: bars measured, diamonds predicted by Little's law")
    handles = _style_legend({r.get("style") or "" for r in rows}) + [
        Line2D([], [], marker="D", color="black", markerfacecolor="white", linestyle="none", label="predicted")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _save(fig, path)


def _log_bar_axes(ax: Any, rows: list[dict[str, Any]], values: list[float], spans: Any) -> None:
    """The shared frame of the per-case bar charts: log x axis, one labelled row per case, workload bands."""
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 2, max(values) * 4)
    ax.set_yticks(range(len(rows)), [r["case"] for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", which="major", alpha=0.35)
    ax.grid(axis="x", which="minor", alpha=0.12)
    _decorate_groups(ax, spans)


def plot_ping(path: Path, records: list[dict[str, Any]]) -> Path | None:
    """/ping p90 latency during each main case: a long bar means the event loop was held."""
    records = main_records(records)
    if not any((r.get("ping") or {}).get("p90_ms") for r in records):
        return None
    rows, spans = _rows(records)
    fig, ax = _bar_figure(len(rows))
    ys = list(range(len(rows)))
    values = []
    for y, record in zip(ys, rows, strict=True):
        p90 = (record.get("ping") or {}).get("p90_ms")
        w = record.get("uncontended_ms")
        color = STYLE_COLORS.get(record.get("style") or "", OTHER_COLOR)
        if p90:
            ax.barh(y, p90, color=color, height=0.7)
            # Beside the bar, or past the W marker when that sits where the label would.
            x = w * 1.12 if w and p90 < w < p90 * 2.5 else p90 * 1.06
            ax.text(x, y, _fmt(p90), va="center", fontsize=7.5, zorder=4,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 0.5})
            values.append(p90)
        else:
            _mark_missing(ax, y, "no /ping samples")
        if w:
            ax.plot(w, y, marker="|", markersize=11, markeredgewidth=1.6, color="#333333", linestyle="none", zorder=3)
            values.append(w)
    _log_bar_axes(ax, rows, values, spans)
    ax.set_xlabel("/ping p90 latency during the case, ms (log scale)")
    ax.set_title("Does the case freeze the event loop? /ping p90 while it runs (long bar = frozen loop)")
    handles = _style_legend({r.get("style") or "" for r in rows}) + [
        Line2D([], [], marker="|", markersize=11, markeredgewidth=1.6, color="#333333", linestyle="none",
               label="W: one request alone")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _save(fig, path)


def _knees(run: dict[str, Any], sweeps: dict[str, list[dict[str, Any]]]) -> list[tuple[int, str, str]]:
    """(concurrency, label, color) of each threadpool and pool size the swept cases run into."""
    threadpools: set[int] = set()
    pools: dict[int, set[str]] = {}
    for points in sweeps.values():
        for record in points:
            if tokens := threadpool_of(run, record):
                threadpools.add(tokens)
            for driver, size in pools_of(run, record).items():
                pools.setdefault(size, set()).add(driver)
    lines = [(n, f"threadpool = {n}", "#555555") for n in sorted(threadpools)]
    for size, drivers in sorted(pools.items()):
        names = f" ({', '.join(sorted(drivers))})" if len(pools) > 1 else ""
        lines.append((size, f"pool = {size}{names}", "#8c564b"))
    return lines


def _sweep_plot(path: Path, run: dict[str, Any], sweeps: dict[str, list[dict[str, Any]]], metric: str) -> Path | None:
    def value(record: dict[str, Any]) -> float | None:
        if metric == "rps":
            return rps(record)
        p99 = (record.get("ab") or {}).get("p99_ms")
        return p99 if p99 is not None and p99 > 0 else None

    series = {case: [(r["concurrency"], value(r), r) for r in points] for case, points in sweeps.items()}
    series = {case: [(c, v, r) for c, v, r in points if v] for case, points in series.items()}
    series = {case: points for case, points in series.items() if points}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(10, 5.5))
    colors = plt.get_cmap("tab10")
    all_values: list[float] = []
    for number, (case, points) in enumerate(sorted(series.items())):
        color = colors(number % 10)
        xs, ys = [c for c, _, _ in points], [v for _, v, _ in points]
        all_values += ys
        ax.plot(xs, ys, marker="o", color=color, label=case, linewidth=1.8)
        if metric == "rps":
            predicted = [(c, predicted_rps(r)) for c, _, r in points if predicted_rps(r)]
            if predicted:
                ax.plot([c for c, _ in predicted], [p for _, p in predicted], linestyle=":", color=color, linewidth=1.3)
                all_values += [p for _, p in predicted]
    ax.set_xscale("log")
    if max(all_values) / min(all_values) > 30:
        ax.set_yscale("log")
    levels = sorted({c for points in series.values() for c, _, _ in points})
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.xaxis.set_minor_locator(NullLocator())
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for position, (c, label, color) in enumerate(_knees(run, sweeps)):
        ax.axvline(c, linestyle="--", color=color, linewidth=1.2)
        ax.text(c * 1.04, 0.98 - 0.06 * (position % 3), label, transform=trans, rotation=0, ha="left", va="top",
                fontsize=8, color=color, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    ax.grid(which="major", alpha=0.3)
    ax.set_xlabel("concurrent clients c (log scale)")
    if metric == "rps":
        ax.set_ylabel("requests per second")
        ax.set_title("Throughput vs concurrency (solid: measured, dotted: predicted)")
    else:
        ax.set_ylabel("p99 latency, ms")
        ax.set_title("p99 latency vs concurrency: it climbs once a resource saturates")
    if len(series) > 4:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    else:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def draw_plots(folder: Path, run: dict[str, Any], records: list[dict[str, Any]]) -> list[Path]:
    """Write every plot the records allow into ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        plot_throughput(folder / THROUGHPUT, records),
        plot_ping(folder / PING, records),
    ]
    sweeps = sweep_records(records)
    if sweeps:
        written.append(_sweep_plot(folder / SWEEP_THROUGHPUT, run, sweeps, "rps"))
        written.append(_sweep_plot(folder / SWEEP_P99, run, sweeps, "p99"))
    return [path for path in written if path is not None]
