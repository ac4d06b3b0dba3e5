"""The README's measured sections, generated from committed run folders so every number there has a run behind it.

Each section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in README.md and is
rendered from a folder under ``results/`` (``templates/readme-NAME.md.j2``); a test keeps the
README equal to what the folders render. ``iobench-load readme`` rewrites the sections.
"""

from __future__ import annotations

import re
from pathlib import Path

from loadtests import facts, legacy
from loadtests.findings import evaluate_all
from loadtests.report import environment
from loadtests.stability import series

#: The committed folders, relative to the project root, per README section: a main run, the runs of a
#: stability series and a run of the production profile.
RESULTS = Path("results")
FOLDERS = {"results": RESULTS / "default", "stability": RESULTS / "stability", "production": RESULTS / "production"}
SECTIONS = tuple(FOLDERS)


def render_run(folder: Path, template: str, link: str) -> str:
    """One run folder through ``template``, with the same facts its report shows; ``link`` is the folder as README.md links it."""
    run, records = legacy.read(folder)
    found = facts.build(run, records, evaluate_all(records, run))
    context = {**{name: getattr(found, name) for name in found.__dataclass_fields__}, "folder": link}
    return environment(html=False).get_template(template).render(context).strip() + "\n"


def render_stability(folder: Path, link: str) -> str:
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: (p.name.split("-")[0], int(p.name.split("-")[-1])))
    groups = series(runs)
    return environment(html=False).get_template("readme-stability.md.j2").render(
        groups=groups, folder=link).strip() + "\n"


def render(name: str, root: Path) -> str:
    """README section ``name`` from its committed folder under ``root``."""
    folder, link = root / FOLDERS[name], FOLDERS[name].as_posix()
    if name == "stability":
        return render_stability(folder, link)
    return render_run(folder, f"readme-{name}.md.j2", link)


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
        if not (root / FOLDERS[name]).exists():
            continue
        fresh = render(name, root)
        if section(text, name) != fresh:
            start, end = markers(name)
            text = text.replace(f"{start}\n{section(text, name)}{end}", f"{start}\n{fresh}{end}")
            changed.append(name)
    readme.write_text(text)
    return changed
