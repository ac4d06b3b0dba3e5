"""The report (report.md, report.html, plots) of synthetic runs, and `iobench-load report` on an existing folder.

No server, database or ab: the runs come from tests/synthetic.py. Every ratio a reader compares is paired
(side by side in a block, or through the reference), and "fastest" or a crossover is said only where the
intervals resolve it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from synthetic import make_record, make_records, make_run, server_config, write_folder
from typer.testing import CliRunner

from loadtests.cli import cli
from loadtests.findings import evaluate_all
from loadtests.plots import DRIVERS, PING, SWEEP_THROUGHPUT, draw_plots
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


def section(report: str, heading: str) -> str:
    """The text of the first section whose heading starts with ``heading``, up to the next section of its level."""
    text = report[report.index(heading):]
    level = heading.split(" ", 1)[0]
    end = re.search(rf"\n{level} ", text[1:])
    return text[: end.start() + 1] if end else text


def row(report: str, first_cell: str, heading: str = "## ") -> str:
    """The one table row starting with ``first_cell`` in the first section whose heading starts with ``heading``."""
    rows = [line for line in section(report, heading).splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"no single row for {first_cell}"
    return rows[0]


def rounds(cases: dict[str, list[float]], block: str = "b", **fields: Any) -> list[Record]:
    """Each case measured in one round per efficiency given, side by side in ``block`` (in the dict's order)."""
    out = []
    for number in range(len(next(iter(cases.values())))):
        for position, (key, effs) in enumerate(cases.items()):
            out.append(make_record(key, round=number, eff=effs[number], block=block, position=position, **fields))
    return out


def report_of(tmp_path: Path, records: list[Record], **run: Any) -> str:
    return write_report(write_folder(tmp_path / "run", records, make_run(records, **run))).read_text()


def test_report_has_every_section_findings_first(report: str) -> None:
    headings = ["# iobench run: default profile", "## Findings", "## The article's four cases", "## Drivers on equal terms",
                "## FastAPI's share", "## The psycopg2 pool", "## Does the model explain each case?", "## The samples",
                "## All scenarios", "### wait", "### pg_sleep", "### lookup", "### file", "## Sweeps", "## Plots",
                "## Environment", "## How to read this", "## Compared with"]
    position = 0
    for heading in headings:  # each after the one before
        position = report.index(heading, position)
    assert "Run verdict: every required finding passed." in report
    assert "commit `96288c0`" in report and "15.19, max_connections = 100" in report
    for figure in ("5.53", "0.17", "11.06", "8.29", "pg_sleep/threadpool/psycopg2"):
        assert figure in report
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)


def test_findings_show_intervals_thresholds_their_source_and_pairing(report: str) -> None:
    f2 = row(report, "F2-wait")
    assert "| PASS |" in f2 and re.search(r"\| 2\.\d+ \[2\.\d+, 2\.\d+\] \|", f2) and "| 3 |" in f2
    assert "| >= 1.58 (model, profile's shape) |" in f2 and "| side by side |" in f2
    assert "sqrt(2.5) = 1.58" in report  # where the threshold comes from
    assert "| >= 1.5 (the claim's own) |" in row(report, "N1-lookup")


def test_a_verdict_taken_at_the_bonferroni_level_shows_that_interval_beside_the_95_one(tmp_path: Path) -> None:
    pair = rounds({"wait/async/asyncio": [0.94, 0.9, 0.97, 0.93, 0.95], "wait/sync/time": [0.97, 0.96, 0.9, 0.98, 0.93]})
    looks = {"checkpoints": [3, 5], "confidence": 0.975, "familywise": 0.95, "correction": "Bonferroni over the looks"}
    text = report_of(tmp_path, pair, looks=looks)
    f2 = row(text, "F2-wait")
    assert re.search(r"\| [\d.]+ \[[\d.]+, [\d.]+\] at 97\.5% \|", f2), f2
    assert "every verdict is taken on the 97.5% interval" in text


def test_the_article_table_gives_paired_ratios_the_models_steady_state_ratio_and_the_verdict(report: str) -> None:
    table = section(report, "## The article's four cases")
    case_3 = row(report, "3: async", "## The article's four cases")
    assert "| 2.42 [2.42, 2.42] | 2.5 | yes | F2-wait PASS |" in case_3
    assert "| 0.0625 | no | F1-wait PASS |" in row(report, "2: async-blocking", "## The article's four cases")
    assert "| 1 (case 1) | 1 | - | - |" in row(report, "1: sync", "## The article's four cases")
    assert "These figures are steady state" in table and "start-up" in table


def test_the_article_profile_says_its_figures_include_abs_start_up(tmp_path: Path, records: list[Record]) -> None:
    whole: list[Record] = []
    for record in records:
        copy: Record = {**record}
        copy["method"], copy["steady"] = "ab whole run", None
        whole.append(copy)
    text = report_of(tmp_path, whole)
    assert "ab's start-up included, as the article's were" in section(text, "## The article's four cases")
    assert "ab's start-up and the last requests' drain included" in text
    assert "steady state" not in section(text, "## The samples")


def test_the_driver_table_is_ratios_to_the_reference_and_says_how_each_was_paired(report: str) -> None:
    lookup = section(report, "### lookup: each driver over `lookup/sync/psycopg2`")
    asyncpg = row(lookup, "**asyncpg**", "### lookup")
    assert "| async | 2 [2, 2] | side by side |" in asyncpg and "| 2.00 (2) |" in asyncpg  # wire beside the documented
    assert "| psycopg2 | sync | 1 (reference) | - |" in lookup and "psycopg2-threaded" in lookup
    assert "**fastest: `lookup/async/asyncpg`**, over the runner-up `lookup/async/sqlalchemy-async`" in lookup
    assert "this machine, this run" in lookup  # absolute rates, labelled
    assert "- **psycopg2**:" in report and "https://" in section(report, "## Drivers on equal terms")


def test_fastest_is_not_claimed_where_the_interval_to_the_runner_up_includes_1(tmp_path: Path) -> None:
    close = rounds({"lookup/sync/psycopg2": [0.1, 0.1, 0.1], "lookup/async/asyncpg": [0.2, 0.18, 0.19],
                    "lookup/async/psycopg3-async": [0.19, 0.2, 0.18]})
    text = report_of(tmp_path, close)
    lookup = section(text, "### lookup")
    assert "fastest not resolved: `lookup/async/asyncpg` over the runner-up `lookup/async/psycopg3-async` is" in lookup
    assert row(lookup, "asyncpg", "### lookup") and row(lookup, "psycopg3-async", "### lookup")  # neither in bold


def test_drivers_of_different_blocks_compare_through_the_reference(tmp_path: Path) -> None:
    """asyncpg and psycopg3-async never share a block: their ratio is (a/r) / (b/r), and the table says so."""
    apart = (rounds({"lookup/sync/psycopg2": [0.1] * 4, "lookup/async/asyncpg": [0.3, 0.29, 0.31, 0.3]}, block="asyncpg")
             + rounds({"lookup/sync/psycopg2": [0.12] * 4, "lookup/async/psycopg3-async": [0.2, 0.21, 0.19, 0.2]},
                      block="psycopg3-async"))
    lookup = section(report_of(tmp_path, apart), "### lookup")
    assert "**fastest: `lookup/async/asyncpg`**, over the runner-up `lookup/async/psycopg3-async`" in lookup
    assert "(through `lookup/sync/psycopg2`)" in lookup
    assert "| side by side |" in row(lookup, "**asyncpg**", "### lookup")  # each beside the reference in its own block


def test_fastapis_share_and_the_pool_choice_are_paired_ratios(report: str) -> None:
    share = section(report, "## FastAPI's share")
    assert "| psycopg2 | 0.833 [0.833, 0.833] | side by side | 17% [17%, 17%] |" in share
    assert "`Annotated[Model, Query()]`" in share and "by hand" in share
    pool = section(report, "## The psycopg2 pool")
    assert "| lookup | 1.05 [1.05, 1.05] | side by side |" in pool and "| write |" in pool
    assert "ThreadedConnectionPool" in pool and "QueuePool 16 µs and 66 Python calls" in pool


def test_the_pool_cost_quotes_the_drivers_docstring() -> None:
    """The report's account of the pools' cost is the driver module's, not another measurement."""
    from db.drivers.psycopg2 import ThreadedPsycopg2Database
    from loadtests.choices import POOL_COST

    docstring = " ".join((inspect.getdoc(ThreadedPsycopg2Database) or "").split())
    assert "QueuePool 16 µs and 66 Python calls, this pool 8 µs and 43" in docstring
    assert "16 µs less of a lookup route's 1.5-2 ms of service CPU" in docstring
    assert "QueuePool 16 µs and 66 Python calls, the threaded pool 8 µs and 43" in POOL_COST


def test_the_model_is_judged_per_bound_class_and_on_held_out_points(tmp_path: Path) -> None:
    from synthetic import SHAPE

    from app.catalogue import SCENARIOS_BY_ID
    from loadtests.model import predict
    from loadtests.work import CpuPerRequest

    # asyncpg's lookup bound by the service's CPU: explained by the run's own CPU per request (1 core / 0.8 ms).
    cpu = CpuPerRequest(0.0008, 0.0002, 0.0001, 0)
    bound = rounds({"lookup/sync/psycopg2": [0.1] * 3, "lookup/async/asyncpg": [0.08] * 3})
    for record in bound:
        if record["case"] == "lookup/async/asyncpg":
            record["model"] = predict(SCENARIOS_BY_ID["lookup/async/asyncpg"], 40, 0.0022, SHAPE, cpu=cpu).to_dict()
            assert record["steady"] is not None
            record["steady"]["rps"] = 600.0  # half of 1 / 0.8 ms: the CPU was not saturated
    sweep = [make_record("wait/sync/time", round=r) for r in range(3)]
    sweep += [make_record("wait/sync/time", c=c, sweep=True, eff=eff) for c, eff in ((1, 0.95), (16, 0.5))]
    text = report_of(tmp_path, bound + sweep)
    model = section(text, "## Does the model explain each case?")
    assert "**Explained: 0 of 1 cases**" in model
    assert "`lookup/async/asyncpg`: measured 600 rps, explained 1,250 (bound service CPU; ×0.48). The CPU part was not " \
           "saturated under load (the service kept 45% of a core busy); the calibration's tightest other bound, clients, " \
           "gives 18,182 rps." in model
    assert "**Predicted:" in model and "`lookup/sync/psycopg2`: measured" in model
    assert "**Held-out: 1 of 2 sweep points** (50%; the test asks 90%: **FAIL**)" in model
    assert "miss: `wait/sync/time` at c = 16, bound clients (predicted)" in model


def test_the_samples_say_how_they_were_counted_and_when_the_host_took_cpu(tmp_path: Path) -> None:
    steady = rounds({"wait/sync/time": [0.97, 0.9, 0.98], "wait/async/asyncio": [0.94, 0.95, 0.93]})
    for record in steady:
        assert record["cpu"] is not None
        record["cpu"]["steal_s"] = 0.002 if record["round"] == 1 and record["case"] == "wait/sync/time" else 0.0
    text = section(report_of(tmp_path, steady), "## The samples")
    assert "counted from the service's completion log (6 samples)" in text
    assert "warm-up of 0.15 s and counted a window of 0.5 s holding" in text
    assert "1 sample(s) at or above 0.1 of a core" in text
    assert re.search(r"\| `wait/sync/time` \| 40 \| 2 \| 0\.\d+ \| 2\.00 \| -\d+% \|", text), text


def test_case_tables_show_samples_intervals_probe_samples_and_errors(report: str) -> None:
    line = row(report, "`wait/sync/time`", "## All scenarios")
    assert re.search(r"\| 40 \| 3 \| [\d,.]+ \[[\d,.]+, [\d,.]+\] \|", line)  # c, samples, rps with its interval
    assert "(120)" in line  # 40 probe samples in each of 3 rounds
    assert "error in 1 of 4 rounds" in row(report, "`report/async/asyncpg`", "## All scenarios")
    assert "this machine at the time" in section(report, "## All scenarios")


def test_a_case_over_one_percent_errors_is_marked(tmp_path: Path, records: list[Record]) -> None:
    failing = [make_record("wait/sync/time", round=r, non_2xx=5) if rec["case"] == "wait/sync/time" and not rec.get("sweep")
               else rec for r, rec in enumerate(records)]
    folder = write_folder(tmp_path / "run", failing, make_run(failing))
    text = write_report(folder).read_text()
    assert "`wait/sync/time` ⚠" in text
    assert 'class="errors"' in (folder / HTML_REPORT).read_text()


def test_html_is_self_contained_with_findings_first_and_sortable_tables(written: Path) -> None:
    html = (written / HTML_REPORT).read_text()
    assert html.index('id="findings"') < html.index('id="plots"') < html.index('id="drivers"') < html.index('id="scenarios"')
    assert html.count("data:image/png;base64,") == 3
    assert 'class="sortable"' in html and "aria-sort" in html
    assert "<script src" not in html and "<link" not in html  # nothing to fetch
    assert "<strong>fastest: <code>lookup/async/asyncpg</code></strong>" in html


def test_plots_are_pngs(written: Path) -> None:
    for name in (DRIVERS, PING, SWEEP_THROUGHPUT):
        data = (written / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000


def test_plots_skip_what_has_no_data(tmp_path: Path, records: list[Record]) -> None:
    from loadtests import facts

    def drawn(folder: Path, chosen: list[Record]) -> list[str]:
        run = make_run(chosen)
        return [path.name for path in draw_plots(folder, facts.build(run, chosen, evaluate_all(chosen, run)), chosen)]

    assert drawn(tmp_path / "empty", []) == []
    assert drawn(tmp_path / "errored", [r for r in records if r.get("error")]) == []
    assert drawn(tmp_path / "few", [r for r in records if r["case"].startswith("wait/") and not r.get("sweep")]) == [PING]


def test_partial_run_with_a_torn_line_is_said(tmp_path: Path, records: list[Record]) -> None:
    main = [r for r in records if not r.get("sweep")][:5]
    run = make_run(main, planned=60, status="interrupted", finished=None, error="KeyboardInterrupt")
    text = write_report(write_folder(tmp_path / "run", main, run, torn=True)).read_text()
    assert "partial run: 5 of 60 planned measurements (status: interrupted)" in text
    assert "KeyboardInterrupt" in text
    assert "| **NOT MEASURED** |" in row(text, "F4-file")
    assert "Run verdict: inconclusive" in text


def test_a_server_shaped_otherwise_is_warned_about(tmp_path: Path, records: list[Record]) -> None:
    text = report_of(tmp_path, records, servers=[server_config(1, tokens=40, pool=10)])
    assert "**Warning: the server measured is not the profile's.**" in text
    assert "Ran 40 threadpool tokens; the profile declares 16" in text and "pools of 10" in text


def test_an_empty_run_renders(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "run", [], {})
    text = write_report(folder).read_text()
    assert "## Findings" in text and "No plot" in text


def test_a_folder_from_before_steady_windows_reads_as_abs_whole_run(tmp_path: Path, records: list[Record]) -> None:
    """results/ still holds runs without `steady`, `method` or blocks: their figures were ab's whole run."""
    new_only = ("block", "position", "method", "steady", "warm_s", "window_s", "ping_uncontended_ms")
    old = [{k: v for k, v in r.items() if k not in new_only} for r in records]
    text = report_of(tmp_path, old)  # type: ignore[arg-type]  # records as an older harness wrote them
    assert "Figures are ab's own rate over a whole run" in text
    assert re.search(r"\| 2\.\d+ \[[\d.]+, [\d.]+\] \|", row(text, "F2-wait"))


def test_report_command_rerenders_without_measuring(tmp_path: Path, records: list[Record]) -> None:
    folder = write_folder(tmp_path / "run", records, make_run(records))
    result = CliRunner().invoke(cli, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / REPORT).exists() and (folder / HTML_REPORT).exists() and (folder / DRIVERS).exists()
    assert "F2-wait" in result.output
    bad = CliRunner().invoke(cli, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and bad.output.startswith("error: ")


def test_the_verdicts_in_the_report_are_the_findings(report: str, records: list[Record]) -> None:
    run: dict[str, Any] = make_run(records)
    for verdict in evaluate_all(records, run):
        assert f"| {verdict.label} |" in row(report, verdict.finding.id) or f"| **{verdict.label}** |" in row(report, verdict.finding.id)


def test_a_crossover_is_stated_only_as_the_intervals_resolve_it() -> None:
    from loadtests.production import crossover_text

    assert crossover_text([(0.0, 0.9, 1.1), (1.0, 1.2, 1.4), (5.0, 1.6, 2.4)]) == "between 1 and 5 ms"
    assert crossover_text([(0.0, 1.5, 1.9), (1.0, 2.0, 2.2)]) == "already at 0 ms"
    assert crossover_text([(0.0, 0.9, 1.1), (5.0, 1.2, 1.45)]) == "not within 5 ms"
    assert crossover_text([(0.0, 0.9, 1.1), (1.0, 1.3, 1.7), (5.0, 1.6, 2.4)]) == "not resolved"  # 1 ms straddles
    assert crossover_text([(0.0, 0.9, 1.1), (5.0, 1.2, 1.8)]) == "not resolved"  # never wholly above, not wholly below
    assert crossover_text([(0.0, None, None), (2.0, 1.7, 1.9)]) == "not resolved"  # nothing below it to cross from
    assert crossover_text([(0.0, 1.0, 1.0), (1.0, 1.2, 1.2), (5.0, 2.0, 2.0)]) == "between 1 and 5 ms"  # the model's points


def production_records() -> list[Record]:
    records: list[Record] = []
    for number in range(3):
        for position, (case, eff) in enumerate((("lookup/sync/psycopg2", 0.1), ("lookup/async/asyncpg", 0.08))):
            for rtt, via, workers, factor in ((0.0, "direct", 1, 1.0), (5.0, "direct", 1, 0.5), (0.0, "pgbouncer", 1, 0.9),
                                              (0.0, "direct", 2, 1.1)):
                noise = (1.0, 1.6, 0.55)[number] if case == "lookup/async/asyncpg" and rtt == 5.0 else 1.0
                record = make_record(case, round=number, eff=eff * factor * noise, position=position)
                record["rtt_ms"], record["via"], record["workers"] = rtt, via, workers
                record["variant"] = (rtt, via, workers) != (0.0, "direct", 1)
                records.append(record)
    return records


def test_the_production_shape_gives_each_setup_its_own_ratios(tmp_path: Path) -> None:
    from loadtests.production import setup_table

    records = production_records()
    table = setup_table(records)
    assert table is not None
    assert [s.label for s in table.setups] == ["0 ms", "5 ms", "0 ms + PgBouncer", "0 ms, 2 workers"]
    assert set(table.rows) == {"lookup/sync/psycopg2", "lookup/async/asyncpg"}
    folder = write_folder(tmp_path / "run", records, make_run(records))
    text = write_report(folder).read_text()
    shape = section(text, "## The production shape")
    line = row(shape, "`lookup/async/asyncpg`", "## The production shape")
    assert re.match(r"\| `lookup/async/asyncpg` \| \*\*2 \[2, 2\]\*\* · 1,45\d \| [\d.]+ \[", line), line  # bold: resolved
    assert "never measured side by side" in shape
    assert "- 5 ms: fastest not resolved" in shape  # the 5 ms rounds disagree
    bouncer = section(text, "## Through PgBouncer")
    assert "no PgBouncer/direct ratio" in bouncer
    printed = CliRunner().invoke(cli, ["report", str(folder)]).output
    assert "crossover lookup: lookup/async/asyncpg over lookup/sync/psycopg2 reaches 1.5x: " in printed  # the run's answer
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
    text = report_of(tmp_path, records, rtt_measured={"1": 1.2})
    hop = section(text, "## The database a network hop away")
    assert "measured added RTT: 1 ms → 1.20 ms" in hop and "0.40 ms per request" in hop
    assert "| `lookup/async/asyncpg` |" in hop and "`wait/sync/time`" not in hop  # only cases with a database
    assert "Crossover" not in hop

