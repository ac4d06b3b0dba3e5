"""report.md and report.html: a run folder rendered for people choosing route styles and drivers.

``write_report`` reads a run folder (a partial run or a torn last line is fine), judges the
findings, draws the plots and renders both reports from the same facts (``facts.build``)
through Jinja2 templates (``loadtests/templates``). The Markdown links the plots by file
name; the HTML embeds them, so it is one self-contained file to open or attach.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, PackageLoader, Undefined, select_autoescape

from loadtests import facts, legacy
from loadtests.choices import Share
from loadtests.compare import compare_folders
from loadtests.findings import evaluate_all
from loadtests.pairing import Comparison
from loadtests.plots import CAPTIONS, STYLE_COLORS, draw_plots
from loadtests.results import HTML_REPORT, REPORT
from loadtests.stats import Interval


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined) or (isinstance(value, float) and (math.isnan(value) or math.isinf(value)))


def quantity(value: float | None) -> str:
    """Three significant figures or so, thousands separated: requests per second and milliseconds alike."""
    if _missing(value):
        return "-"
    assert value is not None
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def ratio(value: float | None) -> str:
    if _missing(value):
        return "-"
    assert value is not None
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def pct(value: float | None) -> str:
    return "-" if _missing(value) else f"{value:.0%}"


def level(confidence: float | None) -> str:
    """A confidence level: 95%, 98.3%."""
    return "-" if _missing(confidence) else f"{confidence:.1%}".replace(".0%", "%")


def share(found: Share | None) -> str:
    """A share of throughput with its interval: ``12% [8%, 15%]``."""
    if found is None or isinstance(found, Undefined):
        return "-"
    if found.low is None or found.high is None:
        return f"{found.center:.0%} (1 round)"
    return f"{found.center:.0%} [{found.low:.0%}, {found.high:.0%}]"


def paired(found: Comparison | None) -> str:
    """How a ratio was formed: side by side, or through the reference both were measured beside."""
    if found is None or isinstance(found, Undefined):
        return "-"
    return "side by side" if found.through is None else f"through `{found.through}`"


def signed_pct(value: float | None) -> str:
    return "-" if _missing(value) else f"{value:+.0f}%"


def ci(found: Interval | Comparison | None, ratio: bool = False) -> str:
    """``center [low, high]`` of an interval or a paired comparison's; one value gives no interval, and says so."""
    if isinstance(found, Comparison):
        found = found.interval
    if found is None or isinstance(found, Undefined):
        return "-"
    fmt: Callable[[float | None], str] = globals()["ratio"] if ratio else quantity  # the argument hides ratio()
    if not found.bounded:
        return f"{fmt(found.center)} (1 round)"
    return f"{fmt(found.center)} [{fmt(found.low)}, {fmt(found.high)}]"


def minutes(seconds: float | None) -> str:
    """A run's wall time: ``7 min 48 s``."""
    if _missing(seconds):
        return "-"
    assert seconds is not None
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def seconds(value: float | None) -> str:
    """A short duration: ``0.52 s``, ``12 s``."""
    if _missing(value):
        return "-"
    assert value is not None
    return f"{value:.2g} s" if value < 10 else f"{value:.0f} s"


def center(found: Interval | Comparison | None) -> float | None:
    if isinstance(found, Comparison):
        found = found.interval
    return found.center if isinstance(found, Interval) else None


def oneline(text: Any, limit: int = 10_000) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."


def cell(text: Any, limit: int = 10_000) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return oneline(text, limit).replace("|", "\\|")


def environment(html: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("loadtests", "templates"),
        autoescape=select_autoescape(["html.j2"]) if html else False,
        undefined=ChainableUndefined,  # a partial or empty run lacks fields: they render empty
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(q=quantity, ratio=ratio, pct=pct, signed_pct=signed_pct, ci=ci, center=center, minutes=minutes,
                       oneline=oneline, cell=cell, level=level, share=share, paired=paired, seconds=seconds)
    return env


def _context(found: facts.Facts) -> dict[str, Any]:
    """The facts as template variables, with the environment's dicts turned into readable strings."""
    server = found.server
    database = server.get("database") or {}
    if database.get("error"):
        postgres = f"unknown ({database['error']})"
    elif database:
        postgres = f"{database.get('server_version') or '?'}, max_connections = {database.get('max_connections') or '?'}"
    else:
        postgres = "not recorded"
    pools_text = ", ".join(f"{name} {info.get('max')}" for name, info in sorted((server.get("pools") or {}).items())
                      if isinstance(info, dict)) or "-"
    libraries = ", ".join(f"{name} {version or 'not installed'}" for name, version in (server.get("libraries") or {}).items()) or "-"
    context = {field.name: getattr(found, field.name) for field in dataclasses.fields(found)}
    return {**context, "postgres": postgres, "pools_text": pools_text, "libraries": libraries}


def render_markdown(found: facts.Facts) -> str:
    return environment(html=False).get_template("report.md.j2").render(_context(found)).rstrip() + "\n"


def render_html(found: facts.Facts, folder: Path) -> str:
    """The self-contained HTML report: plots embedded as data URIs."""
    images = {plot.file: base64.b64encode((folder / plot.file).read_bytes()).decode() for plot in found.plots
              if (folder / plot.file).exists()}
    context = {**_context(found), "images": images, "style_colors": STYLE_COLORS}
    return environment(html=True).get_template("report.html.j2").render(context)


def write_report(folder: Path, compare_with: Path | None = None) -> Path:
    """Render ``folder``'s report.md, report.html and plots from run.json and results.jsonl; returns report.md."""
    folder = Path(folder)
    run, records = legacy.read(folder)
    found = facts.build(run, records, evaluate_all(records, run))
    plot_error = None
    try:
        plots = [facts.Plot(path.name, CAPTIONS[path.name]) for path in draw_plots(folder, found, records)]
    except Exception as exc:  # noqa: BLE001 - a broken plot must not cost the run its report
        plots, plot_error = [], f"{type(exc).__name__}: {exc}"
    compare = compare_folders(Path(compare_with), folder) if compare_with is not None else None
    found = dataclasses.replace(found, plots=plots, plot_error=plot_error, compare=compare)
    (folder / HTML_REPORT).write_text(render_html(found, folder), encoding="utf-8")
    path = folder / REPORT
    path.write_text(render_markdown(found), encoding="utf-8")
    return path
