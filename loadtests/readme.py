"""The README's measured sections, generated from committed run folders so every number there has a run behind it.

Each section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in README.md and is
rendered from a folder under ``results/`` (``templates/readme-NAME.md.j2``); a test keeps the
README equal to what the folders render. ``iobench-load readme`` rewrites the sections.
"""

from __future__ import annotations

import re
from pathlib import Path

from loadtests import facts
from loadtests.findings import evaluate_all
from loadtests.report import environment
from loadtests.results import read_run
from loadtests.stability import series

#: The committed folders, relative to the project root: a main run, and the runs of a stability series.
RESULTS = Path("results")
MAIN_RUN = RESULTS / "default"
STABILITY_RUNS = RESULTS / "stability"
SECTIONS = ("results", "stability")


def render_results(folder: Path) -> str:
    run, records = read_run(folder)
    found = facts.build(run, records, evaluate_all(records, run))
    context = {**{name: getattr(found, name) for name in found.__dataclass_fields__}, "folder": folder.as_posix()}
    return environment(html=False).get_template("readme-results.md.j2").render(context).strip() + "\n"


def render_stability(folder: Path) -> str:
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: (p.name.split("-")[0], int(p.name.split("-")[-1])))
    groups = series(runs)
    return environment(html=False).get_template("readme-stability.md.j2").render(
        groups=groups, folder=folder.as_posix()).strip() + "\n"


def render(name: str, root: Path) -> str:
    if name == "results":
        return render_results(root / MAIN_RUN)
    return render_stability(root / STABILITY_RUNS)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def section(text: str, name: str) -> str:
    """What README.md holds between ``name``'s markers."""
    start, end = markers(name)
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, re.S)
    if match is None:
        raise ValueError(f"README.md has no {start} ... {end} section")
    return match.group(1)


def rewrite(readme: Path, root: Path, names: tuple[str, ...] = SECTIONS) -> list[str]:
    """Render each section from its committed folder into ``readme``; returns the names that changed."""
    text, changed = readme.read_text(), []
    for name in names:
        if not (root / (MAIN_RUN if name == "results" else STABILITY_RUNS)).exists():
            continue
        fresh = render(name, root)
        if section(text, name) != fresh:
            start, end = markers(name)
            text = text.replace(f"{start}\n{section(text, name)}{end}", f"{start}\n{fresh}{end}")
            changed.append(name)
    readme.write_text(text)
    return changed
