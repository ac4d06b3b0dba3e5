"""The documentation site: `make docs` builds it with every warning an error, and Chromium can read it.

The build runs once per session (a few seconds); a copy of docs/ with a broken link and a page in no
table of contents must fail it. Headless Chromium (Debian's, driven by Playwright as in
tests/test_report_browser.py) opens the built site from disk: the navigation lists every page, and
every plot on the home page, the driver and production pages and the default run's page has loaded.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from browser import CHROMIUM, headless_chromium
from playwright.sync_api import Page

from loadtests.readme import FOLDERS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
VENV = Path(sys.prefix)
#: Every page of the site, as docs/ holds it (the build makes PAGE.html of each PAGE.md).
PAGES = sorted(path.relative_to(DOCS).with_suffix("").as_posix() for path in DOCS.rglob("*.md") if "_build" not in path.parts)

pytestmark = [pytest.mark.docs, pytest.mark.timeout(180)]


def make_docs(out: Path, source: Path = DOCS) -> subprocess.CompletedProcess[str]:
    """`make docs` into ``out``, with this test run's venv (taken as installed: make installs nothing here)."""
    command = ["make", "--no-print-directory", "-o", f"{VENV}/.installed-stamp", "docs",
               f"VENV={VENV}", f"DOCS_OUT={out}", f"DOCS_SRC={source}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = make_docs(out)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def test_make_docs_builds_every_page_without_a_warning(site: Path) -> None:
    for page in PAGES:
        assert (site / f"{page}.html").is_file(), page


def test_a_broken_link_or_a_page_in_no_navigation_fails_the_build(tmp_path: Path) -> None:
    # A checkout beside the real one: its own docs/, the same code and results (conf.py imports from its parent).
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("_build"))
    for name in ("app", "db", "loadtests", "migrations", "results"):
        (tmp_path / name).symlink_to(ROOT / name)
    claims = tmp_path / "docs" / "claims.md"
    claims.write_text(claims.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    (tmp_path / "docs" / "orphan.md").write_text("# In no table of contents\n")
    built = make_docs(tmp_path / "out", tmp_path / "docs")
    assert built.returncode != 0
    assert "no-such-page" in built.stderr and "orphan" in built.stderr and "toctree" in built.stderr, built.stderr


@pytest.fixture(scope="module")
def browser(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """A headless Chromium tab; afterwards no process of that browser may remain."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH; .ci/run installs Debian's chromium package")
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context.pages[0] if context.pages else context.new_page()


@pytest.mark.parametrize("page", ["index", "drivers", "runs/default"])
def test_the_navigation_lists_every_page(browser: Page, site: Path, page: str) -> None:
    browser.goto((site / f"{page}.html").as_uri(), wait_until="load")
    links = browser.locator(".sidebar-tree a.reference").evaluate_all("links => links.map(link => link.href)")
    listed = {_file(link) for link in links}
    # The home page is the site's name at the top of the navigation (a link to itself on the home page).
    listed.add(_file(browser.locator(".sidebar-brand").evaluate("link => link.href")))
    expected = {(site / f"{name}.html").resolve() for name in PAGES}
    assert expected <= listed, f"not in the navigation: {sorted(str(p) for p in expected - listed)}"


@pytest.mark.parametrize("page, plots", [
    ("index", 1),  # the front page's plot
    ("drivers", int((ROOT / FOLDERS["drivers"] / "drivers.png").is_file())),
    ("production", int((ROOT / FOLDERS["production"] / "rtt.png").is_file())),
    ("runs/default", len(list((ROOT / FOLDERS["default"]).glob("*.png")))),
    ("runs/drivers", len(list((ROOT / FOLDERS["drivers"]).glob("*.png")))),
])
def test_every_plot_on_the_page_loads(browser: Page, site: Path, page: str, plots: int) -> None:
    browser.goto((site / f"{page}.html").as_uri(), wait_until="load")
    images = browser.locator("article img")
    assert images.count() == plots
    for image in images.all():
        width = image.evaluate("img => img.decode().then(() => img.naturalWidth, () => 0)")
        assert width > 0, f"{image.get_attribute('src')} did not load on {page}.html"


def _file(url: str) -> Path:
    return Path(unquote(url.removeprefix("file://").split("#")[0])).resolve()
