"""The README stays true: its commands, its scenario table, and what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from app.catalogue import markdown_table
from app.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_scenario_table_is_the_catalogue() -> None:
    table = re.search(r"<!-- scenarios:start -->\n(.*?)\n<!-- scenarios:end -->", README, re.DOTALL)
    assert table, "README lost its scenario table markers"
    assert table.group(1) == markdown_table(), "regenerate it: .venv/bin/iobench scenarios"


def test_scenarios_command_prints_the_table() -> None:
    result = CliRunner().invoke(cli, ["scenarios"])
    assert result.exit_code == 0 and result.output.strip() == markdown_table()


def test_first_two_commands_are_bench_and_test() -> None:
    block = re.search(r"```sh\n(.*?)```", README, re.DOTALL)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands[:2] == ["make bench", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "\nbench:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
