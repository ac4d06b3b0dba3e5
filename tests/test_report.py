"""The report (report.md, report.html, plots) of synthetic runs, and `iobench-load report` on an existing folder.

No server, database or ab: the runs come from tests/synthetic.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from synthetic import make_record, make_records, make_run, server_config, write_folder
from typer.testing import CliRunner

from loadtests.cli import cli
from loadtests.findings import evaluate_all
from loadtests.plots import PING, SWEEP_P99, SWEEP_THROUGHPUT, THROUGHPUT, draw_plots
from loadtests.report import write_report
from loadtests.results import HTML_REPORT, REPORT, Record

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return make_records()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, records: list[Record]) -> Path:
    """A complete synthetic run, reported against an older copy of itself (plots drawn once)."""
    root = tmp_path_factory.mktemp("runs")
    folder = write_folder(root / "new", records, make_run(records))
    old = write_folder(root / "old", records, make_run(records))
    assert write_report(folder, compare_with=old) == folder / REPORT
    return folder


@pytest.fixture(scope="module")
def report(written: Path) -> str:
    return (written / REPORT).read_text()


def row(report: str, first_cell: str, section: str = "## ") -> str:
    """The one table row starting with ``first_cell`` in the first section whose heading starts with ``section``."""
    text = report[report.index(section):]
    text = text[: text.find("\n## ", 1)] if "\n## " in text[1:] else text
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"no single row for {first_cell}"
    return rows[0]


def test_report_has_every_section_findings_first(report: str) -> None:
    headings = ["# iobench run: default profile", "## Findings", "## The article's four cases", "## All scenarios",
                "### wait", "### pg_sleep", "### lookup", "### file", "## Sweeps", "## Plots", "## Environment",
                "## How to read this", "## Compared with"]
    positions = [report.index(heading) for heading in headings]
    assert positions == sorted(positions)
    assert "Run verdict: every required finding passed." in report
    assert "commit `96288c0`" in report and "15.19, max_connections = 100" in report
    for figure in ("5.53", "0.17", "11.06", "8.29", "pg_sleep/threadpool/psycopg2"):
        assert figure in report
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)


def test_findings_show_intervals_thresholds_and_rounds(report: str) -> None:
    f2 = row(report, "F2-wait")
    assert "| PASS |" in f2 and re.search(r"\| 2\.\d+ \[2\.\d+, 2\.\d+\] \|", f2) and "| >= 1.58 |" in f2 and "| 3 |" in f2
    assert "sqrt(2.5) = 1.58" in report  # where the threshold comes from
    assert "| >= 1.5 |" in row(report, "N1-lookup")


def test_case_tables_show_rounds_intervals_probe_samples_and_errors(report: str) -> None:
    line = row(report, "`wait/sync/time`", "## All scenarios")
    assert "| 3 |" in line  # rounds
    assert re.search(r"\| [\d,.]+ \[[\d,.]+, [\d,.]+\] \|", line)  # rps with its interval
    assert "(120)" in line  # 40 probe samples in each of 3 rounds
    errored = row(report, "`report/async/asyncpg`", "## All scenarios")
    assert "error in 1 of 4 rounds" in errored
    assert "Each ab sample lasted about" in report


def test_drivers_show_measured_beside_documented_round_trips_and_their_setup(report: str) -> None:
    lines = [line for line in report.splitlines() if line.startswith("| psycopg2 | sync | lookup |")]
    assert len(lines) == 1 and "| 2.00 (2) |" in lines[0]  # measured on the wire, then what the catalogue's Setup documents
    assert "- **psycopg2**:" in report and "https://" in report.split("## Drivers on equal terms")[1]


def test_a_case_over_one_percent_errors_is_marked(tmp_path: Path, records: list[Record]) -> None:
    failing = [make_record("wait/sync/time", round=r, non_2xx=5) if rec["case"] == "wait/sync/time" and not rec.get("sweep")
               else rec for r, rec in enumerate(records)]
    folder = write_folder(tmp_path / "run", failing, make_run(failing))
    text = write_report(folder).read_text()
    assert "`wait/sync/time` ⚠" in text
    assert 'class="errors"' in (folder / HTML_REPORT).read_text()


def test_html_is_self_contained_with_findings_first_and_sortable_tables(written: Path) -> None:
    html = (written / HTML_REPORT).read_text()
    assert html.index('id="findings"') < html.index('id="plots"') < html.index('id="scenarios"')
    assert html.count("data:image/png;base64,") == 4
    assert 'class="sortable"' in html and "aria-sort" in html
    assert "<script src" not in html and "<link" not in html  # nothing to fetch


def test_plots_are_pngs(written: Path) -> None:
    for name in (THROUGHPUT, PING, SWEEP_THROUGHPUT, SWEEP_P99):
        data = (written / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000


def test_plots_skip_what_has_no_data(tmp_path: Path, records: list[Record]) -> None:
    run = make_run(records)
    assert draw_plots(tmp_path / "empty", run, []) == []
    assert draw_plots(tmp_path / "errored", run, [r for r in records if r.get("error")]) == []
    few = [r for r in records if r["case"].startswith("wait/") and not r.get("sweep")]
    assert [path.name for path in draw_plots(tmp_path / "few", run, few)] == [THROUGHPUT, PING]


def test_partial_run_with_a_torn_line_is_said(tmp_path: Path, records: list[Record]) -> None:
    main = [r for r in records if not r.get("sweep")][:5]
    run = make_run(main, planned=60, status="interrupted", finished=None, error="KeyboardInterrupt")
    text = write_report(write_folder(tmp_path / "run", main, run, torn=True)).read_text()
    assert "partial run: 5 of 60 planned measurements (status: interrupted)" in text
    assert "KeyboardInterrupt" in text
    assert "| **NOT MEASURED** |" in row(text, "F4-file")
    assert "Run verdict: inconclusive" in text


def test_a_server_shaped_otherwise_is_warned_about(tmp_path: Path, records: list[Record]) -> None:
    run = make_run(records, servers=[server_config(1, tokens=40, pool=10)])
    text = write_report(write_folder(tmp_path / "run", records, run)).read_text()
    assert "**Warning: the server measured is not the profile's.**" in text
    assert "Ran 40 threadpool tokens; the profile declares 16" in text and "pools of 10" in text


def test_an_empty_run_renders(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "run", [], {})
    text = write_report(folder).read_text()
    assert "## Findings" in text and "No plot" in text


def test_report_command_rerenders_without_measuring(tmp_path: Path, records: list[Record]) -> None:
    folder = write_folder(tmp_path / "run", records, make_run(records))
    result = CliRunner().invoke(cli, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / REPORT).exists() and (folder / HTML_REPORT).exists() and (folder / THROUGHPUT).exists()
    assert "F2-wait" in result.output
    bad = CliRunner().invoke(cli, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and bad.output.startswith("error: ")


def test_the_verdicts_in_the_report_are_the_findings(report: str, records: list[Record]) -> None:
    run: dict[str, Any] = make_run(records)
    for verdict in evaluate_all(records, run):
        assert f"| {verdict.label} |" in row(report, verdict.finding.id) or f"| **{verdict.label}** |" in row(report, verdict.finding.id)


def test_the_crossover_is_interpolated_between_levels() -> None:
    from loadtests.facts import crossing

    assert crossing([(0.0, 1.0), (1.0, 1.2), (5.0, 2.0)]) == pytest.approx(1.0 + (1.5 - 1.2) / 0.8 * 4)
    assert crossing([(0.0, 1.6), (1.0, 2.0)]) == 0.0  # already there
    assert crossing([(0.0, 1.0), (5.0, 1.4)]) is None  # not within the levels
    assert crossing([(0.0, None), (2.0, 1.7)]) == 2.0


def test_the_production_shape_lines_up_every_setup(tmp_path: Path) -> None:
    from loadtests.facts import setup_table

    records: list[Record] = []
    for number in range(3):
        for case, eff in (("lookup/sync/psycopg2", 0.1), ("lookup/async/asyncpg", 0.08)):
            for rtt, via, workers, factor in ((0.0, "direct", 1, 1.0), (5.0, "direct", 1, 0.5), (0.0, "pgbouncer", 1, 0.9),
                                              (0.0, "direct", 2, 1.1)):
                record = make_record(case, round=number, eff=eff * factor)
                record["rtt_ms"], record["via"], record["workers"] = rtt, via, workers
                record["variant"] = (rtt, via, workers) != (0.0, "direct", 1)
                records.append(record)
    table = setup_table(records)
    assert table is not None
    assert table.setups == ["0 ms", "5 ms", "0 ms + PgBouncer", "0 ms, 2 workers"]
    assert set(table.rows) == {"lookup/sync/psycopg2", "lookup/async/asyncpg"}
    folder = write_folder(tmp_path / "run", records, make_run(records))
    text = write_report(folder).read_text()
    assert "## The production shape" in text and "| 0 ms, 2 workers |" in text
    printed = CliRunner().invoke(cli, ["report", str(folder)]).output
    assert "crossover lookup: lookup/async/asyncpg over lookup/sync/psycopg2 reaches 1.5x: " in printed  # the run's answer, printed
    assert setup_table([r for r in records if not r.get("variant")]) is None


def test_a_single_rtt_run_reports_the_added_rtt_and_the_proxys_cpu(tmp_path: Path) -> None:
    """`--db-rtt 1`: no sweep and no crossover, but the report says what the proxy added and cost."""
    records: list[Record] = []
    for number in range(3):
        for case in ("lookup/sync/psycopg2", "lookup/async/asyncpg", "wait/sync/time"):
            record = make_record(case, round=number)
            record["rtt_ms"] = 1.0
            if record["pooled"]:
                assert record["cpu"] is not None
                record["cpu"]["proxy_s"] = 0.0004
            records.append(record)
    folder = write_folder(tmp_path / "run", records, make_run(records, rtt_measured={"1": 1.2}))
    text = write_report(folder).read_text()
    section = text[text.index("## The database a network hop away"):]
    section = section[: section.index("\n## ", 1)]
    assert "measured added RTT: 1 ms → 1.20 ms" in section and "0.40 ms per request" in section
    assert "| `lookup/async/asyncpg` |" in section and "`wait/sync/time`" not in section  # only cases with a database
    assert "Crossover" not in section
