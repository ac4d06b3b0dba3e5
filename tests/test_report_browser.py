"""report.html in a real browser: headless Chromium (Debian's package) driven by Playwright.

A synthetic run (tests/synthetic.py) is reported and opened from disk on a 1280 x 900 screen.
The page must show the verdict and the findings on its first screen, every plot drawn and
on screen once scrolled to, and sort its tables by number when a header is clicked.
Playwright drives /usr/bin/chromium; it never downloads a browser of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from browser import ACTION_TIMEOUT_MS, CHROMIUM, SCREEN, headless_chromium
from playwright.sync_api import Locator, Page, expect
from synthetic import make_records, make_run, write_folder

from loadtests.findings import evaluate_all
from loadtests.report import write_report
from loadtests.results import HTML_REPORT, read_run

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH; .ci/run installs Debian's chromium package"),
    pytest.mark.timeout(180),
]


@dataclass
class Report:
    """The page as the browser shows it, and what happened while it loaded."""

    page: Page
    folder: Path
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete synthetic run with report.md, report.html and its plots, compared with a copy of itself."""
    root = tmp_path_factory.mktemp("browser")
    records = make_records()
    old = write_folder(root / "old", records, make_run(records))
    new = write_folder(root / "new", records, make_run(records))
    write_report(new, compare_with=old)
    return new


@pytest.fixture(scope="module")
def report(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    """report.html open in headless Chromium; afterwards no process of that browser may remain."""
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir: no state from another run
    with headless_chromium(profile) as context:
        expect.set_options(timeout=ACTION_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        found = Report(page, folder)
        page.on("request", lambda request: found.requests.append(request.url))
        page.on("pageerror", lambda error: found.errors.append(str(error)))
        page.on("console", lambda message: found.errors.append(message.text) if message.type == "error" else None)
        page.goto((folder / HTML_REPORT).as_uri(), wait_until="load")
        yield found


def test_the_verdict_and_the_findings_are_on_the_first_screen(report: Report, folder: Path) -> None:
    page = report.page
    page.evaluate("window.scrollTo(0, 0)")  # as it opens, whichever test ran before
    banner = page.locator("#run-verdict")
    expect(banner).to_be_visible()
    expect(banner).to_be_in_viewport(ratio=1)
    expect(banner).to_have_text(re.compile(r"Run verdict:\s+every required finding passed\."))
    table = page.locator("#findings-table")
    expect(table).to_be_visible()
    expect(table.locator("thead")).to_be_in_viewport(ratio=1)  # no scrolling needed to find the findings
    rows = table.locator("tbody tr")
    run, records = read_run(folder)
    findings = evaluate_all(records, run)
    expect(rows).to_have_count(len(findings))
    for row, verdict in zip(rows.all(), findings, strict=True):
        expect(row).to_be_visible()
        expect(row.locator("td").first).to_have_text(verdict.finding.id)
        expect(row.locator(".verdict")).to_have_text(verdict.label)
    assert _top(table) < _top(page.locator("figure").first), "the findings come before the plots"
    expect(table.locator("code").first).to_be_visible()  # the claims' case names are code, not `backticks`
    assert "`" not in table.inner_text()


def test_every_plot_is_drawn_and_on_screen_when_scrolled_to(report: Report, folder: Path) -> None:
    page = report.page
    images = page.locator("figure img")
    expect(images).to_have_count(len(list(folder.glob("*.png"))))
    for image in images.all():
        image.scroll_into_view_if_needed()
        expect(image).to_be_visible()
        expect(image).to_be_in_viewport()
        box = image.bounding_box()  # the whole plot on screen (to a pixel): none is taller or wider than the screen
        assert box is not None and box["x"] >= -1 and box["y"] >= -1
        assert box["x"] + box["width"] <= SCREEN["width"] + 1 and box["y"] + box["height"] <= SCREEN["height"] + 1, box
        width, height = image.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
        assert width > 0 and height > 0, f"{image.get_attribute('alt')} did not decode"
        shown = image.evaluate("img => img.getBoundingClientRect().width")
        assert shown >= 0.75 * width, f"{image.get_attribute('alt')} is shrunk to {shown / width:.0%} of its size: its labels blur"
        expect(image.locator("xpath=../figcaption")).to_be_visible()


def test_clicking_a_header_sorts_the_rows_by_number(report: Report) -> None:
    table = report.page.locator("#cases-file")
    header = table.locator("th", has_text="rps [95%]")
    column = table.locator("th").all_inner_texts().index(header.inner_text())
    before = _rows(table, column)
    rps = [value for _, value in before]
    # As text these numbers order otherwise ("1799" < "317" < "800"), so the column tells a numeric sort from a text one.
    assert sorted(rps) != [float(text) for text in sorted(str(value) for value in rps)]
    assert rps != sorted(rps), "the rows must start out of order for the click to show anything"
    header.click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    ascending = _rows(table, column)
    assert [value for _, value in ascending] == sorted(rps)
    assert sorted(ascending) == sorted(before), "each row keeps its own cells"
    header.click()
    expect(header).to_have_attribute("aria-sort", "descending")
    assert [value for _, value in _rows(table, column)] == sorted(rps, reverse=True)


def test_the_page_loads_nothing_and_fits_the_screen(report: Report, tmp_path: Path) -> None:
    page = report.page
    assert all(url.startswith(("file:", "data:")) for url in report.requests), report.requests
    assert report.errors == []  # the sorting script and the page ran without an error
    width, screen = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width <= screen, "a table widens the page: the wide ones scroll in their own box"
    page.evaluate("window.scrollTo(0, 0)")  # sticky table headers would otherwise be drawn where the last test scrolled
    page.screenshot(path=tmp_path / "report.png", full_page=True)  # to look at: pytest's tmp dir for this test
    assert (tmp_path / "report.png").stat().st_size > 50_000


def _top(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return box["y"]


def _rows(table: Locator, column: int) -> list[tuple[str, float]]:
    """Each body row's case name and the number shown in ``column`` (the interval's centre, separators dropped)."""
    cells = table.locator("tbody tr").evaluate_all(
        "(rows, column) => rows.map(row => [row.cells[0].innerText, row.cells[column].innerText])", column)
    return [(case, float(shown.split(" [")[0].replace(",", ""))) for case, shown in cells]
