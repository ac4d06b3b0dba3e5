"""The README and the documentation pages stay true: the commands, the scenario table, what CI runs,
the README's length, and where each section of the old, long README went (docs/readme-sections.toml)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.catalogue import markdown_table
from app.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
#: The front page is read in two minutes; the rest is in docs/.
README_MAX_LINES = 160


def test_scenario_table_is_the_catalogue() -> None:
    page = (DOCS / "styles.md").read_text()
    table = re.search(r"<!-- scenarios:start -->\n(.*?)\n<!-- scenarios:end -->", page, re.DOTALL)
    assert table, "docs/styles.md lost its scenario table markers"
    assert table.group(1) == markdown_table(), "regenerate it: .venv/bin/iobench scenarios"


def test_scenarios_command_prints_the_table() -> None:
    result = CliRunner().invoke(cli, ["scenarios"])
    assert result.exit_code == 0 and result.output.strip() == markdown_table()


@pytest.mark.parametrize("text", [README, (DOCS / "getting-started.md").read_text()], ids=["README.md", "getting-started.md"])
def test_first_two_commands_are_bench_and_test(text: str) -> None:
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands[:2] == ["make bench", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "\nbench:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_a_front_page() -> None:
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the detail to a page of docs/"
    for page in sorted(DOCS.glob("*.md")):  # every page is linked from the front page
        if page.name != "index.md":
            assert f"(docs/{page.name})" in README, f"README.md does not link docs/{page.name}"


def _headings(text: str) -> list[str]:
    """A Markdown file's headings, outside code blocks."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return [match.group(1).strip() for match in re.finditer(r"^#{1,6} (.+)$", text, re.M)]


MOVED = tomllib.loads((DOCS / "readme-sections.toml").read_text())["section"]


@pytest.mark.parametrize("moved", MOVED, ids=[moved["heading"] for moved in MOVED])
def test_every_old_readme_section_is_in_a_page(moved: dict[str, Any]) -> None:
    """Nothing lost: each heading of the README before issue 19 is a heading of the page the map names,
    and each piece of a section that was split is a heading of its page."""
    for page, heading in [(moved["page"], moved["heading"]), *moved.get("parts", [])]:
        assert (DOCS / page).is_file(), f"{moved['heading']!r}: no page docs/{page}"
        assert heading in _headings((DOCS / page).read_text()), f"{moved['heading']!r}: no heading {heading!r} in docs/{page}"


def test_the_map_covers_every_section_the_old_readme_had() -> None:
    old = ["Two commands", "The article, and what iobench adds", "Results on our machine", "Verdicts run after run",
           "In production", "Running the service", "PgBouncer", "Load tests", "Check your own architecture claims",
           "Docker compose", "Scenarios",
           "Failure behaviour", "Layout", "License"]
    assert [moved["heading"] for moved in MOVED] == old
