"""The measured sections of the README and the documentation pages, generated from committed run folders.

Every number in them has a run behind it. Each section sits between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` in the files ``PLACES`` names, and is rendered from its folder under
``results/`` (``templates/section-NAME.md.j2``); the same section may sit in several files, each
linking the run as that file's readers reach it (the README to ``results/``, the site to its run
pages, ``docs/runs/``). A test keeps every file equal to what the folders render;
``iobench-load readme`` rewrites them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests import facts, legacy
from loadtests.findings import evaluate_all
from loadtests.report import environment
from loadtests.stability import series

#: The committed folders, relative to the project root: a main run, the runs of a stability series,
#: a run of the drivers profile (the driver table, narrowed to ±10%) and a run of the production profile.
RESULTS = Path("results")
FOLDERS = {"default": RESULTS / "default", "stability": RESULTS / "stability", "drivers": RESULTS / "drivers",
           "production": RESULTS / "production"}

#: Each section and the folder it is rendered from.
SECTIONS = {
    "front": "default",       # the front page: today's verdicts on the article's cases, the answer, one plot
    "article": "default",     # the article's four cases and every finding
    "model": "default",       # does the model explain each case; the held-out test
    "drivers": "drivers",     # drivers on equal terms, FastAPI's share, the psycopg2 pool
    "stability": "stability",  # verdicts run after run
    "production": "production",  # RTT, PgBouncer, workers
}

#: Where each section lives: (file relative to the project root, section). One list, read by the
#: renderer, ``iobench-load readme`` and tests/test_readme_results.py.
PLACES: tuple[tuple[Path, str], ...] = (
    (Path("README.md"), "front"),
    (Path("docs/index.md"), "front"),
    (Path("docs/styles.md"), "article"),
    (Path("docs/drivers.md"), "drivers"),
    (Path("docs/model.md"), "model"),
    (Path("docs/model.md"), "stability"),
    (Path("docs/production.md"), "production"),
)

#: The site's page for each run folder it shows (docs/runs/NAME.md includes the folder's report.md).
RUN_PAGES = {"default": "runs/default.md", "drivers": "runs/drivers.md", "production": "runs/production.md"}


@dataclass(frozen=True)
class Links:
    """How a file reaches a run folder (the folder as shown, its report, its plots, the folder itself)
    and the documentation pages."""

    folder: str
    report: str | None
    files: str
    listing: str | None
    pages: str

    @classmethod
    def of(cls, place: Path, run: str) -> Links:
        """Links from ``place`` (relative to the root) to ``run``'s folder: the README links
        ``results/`` itself; a documentation page links the site's run page and, for plots, the folder."""
        folder = FOLDERS[run].as_posix()
        up = "../" * (len(place.parts) - 1)
        if not up:
            return cls(folder, f"{folder}/report.md", folder, f"{folder}/", "docs/")
        # docs/NAME.md: a folder is no page of the site, so a series' folder is named, not linked.
        page = RUN_PAGES.get(run)
        return cls(folder, page, f"{up}{folder}", None, "")


def _plots(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def render_run(folder: Path, template: str, links: Links) -> str:
    """One run folder through ``template``, with the same facts its report shows."""
    run, records = legacy.read(folder)
    found = facts.build(run, records, evaluate_all(records, run))
    context: dict[str, Any] = {name: getattr(found, name) for name in found.__dataclass_fields__}
    context.update(vars(links), plots=_plots(folder), by_id={v.finding.id: v for v in found.verdicts})
    return environment(html=False).get_template(template).render(context).strip() + "\n"


def render_stability(folder: Path, links: Links) -> str:
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: (p.name.split("-")[0], int(p.name.split("-")[-1])))
    groups = series(runs)
    return environment(html=False).get_template("section-stability.md.j2").render(
        groups=groups, **vars(links)).strip() + "\n"


def render(name: str, root: Path, place: Path = Path("README.md")) -> str:
    """Section ``name`` from its committed folder under ``root``, as the file ``place`` (relative to ``root``) shows it."""
    run = SECTIONS[name]
    links = Links.of(place, run)
    if name == "stability":
        return render_stability(root / FOLDERS[run], links)
    return render_run(root / FOLDERS[run], f"section-{name}.md.j2", links)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def section(text: str, name: str) -> str:
    """What a file holds between ``name``'s markers."""
    start, end = markers(name)
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, re.S)
    if match is None:
        raise ValueError(f"no {start} ... {end} section")
    return match.group(1)


def rewrite(root: Path, places: tuple[tuple[Path, str], ...] = PLACES) -> list[str]:
    """Render each place's section from its committed folder; returns ``file:section`` for each that changed.

    A section whose folder is not committed under ``root`` is left as it is."""
    changed = []
    for place, name in places:
        if not (root / FOLDERS[SECTIONS[name]]).exists():
            continue
        path = root / place
        text = path.read_text()
        try:
            old = section(text, name)
        except ValueError as error:
            raise ValueError(f"{place.as_posix()}: {error}") from None
        fresh = render(name, root, place)
        if old != fresh:
            start, end = markers(name)
            path.write_text(text.replace(f"{start}\n{old}{end}", f"{start}\n{fresh}{end}"))
            changed.append(f"{place.as_posix()}:{name}")
    return changed
