"""The measured sections of README.md and docs/ are what the committed run folders render (loadtests/readme.py).

Every number in the front page, the article's cases and findings, the model, the driver table, the
stability table and "In production" has a run folder under results/ behind it; `iobench-load readme`
rewrites every file loadtests.readme.PLACES names after a new run is committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import synthetic
from synthetic import make_record, make_records, make_run, write_folder
from typer.testing import CliRunner

from loadtests.cli import cli
from loadtests.readme import FOLDERS, PLACES, SECTIONS, markers, render, rewrite, section

ROOT = Path(__file__).resolve().parent.parent


def _before_steady_windows(folder: Path) -> bool:
    """A committed run written before steady-state samples (its records have no `steady`)."""
    results = folder / "results.jsonl"
    if not results.is_file():
        return False
    first = next((line for line in results.read_text().splitlines() if line.strip()), "{}")
    return "steady" not in json.loads(first)


OLD_RESULTS = any(_before_steady_windows(ROOT / folder) for folder in FOLDERS.values())


@pytest.mark.skipif(OLD_RESULTS, reason="results/ still holds runs from before steady windows and paired blocks "
                    "(issue 17): README.md and docs/ keep their old rendering until new runs are committed and "
                    "`iobench-load readme` re-renders it")
@pytest.mark.parametrize("place, name", PLACES, ids=[f"{place}:{name}" for place, name in PLACES])
def test_each_section_is_its_committed_run_rendered(place: Path, name: str) -> None:
    folder = FOLDERS[SECTIONS[name]]
    assert (ROOT / folder).is_dir(), f"{place}'s {name} section has no committed folder {folder}"
    assert section((ROOT / place).read_text(), name) == render(name, ROOT, place), \
        f"{place} differs from results/: run `.venv/bin/iobench-load readme` and commit"


def test_every_section_has_a_place_and_the_readme_keeps_the_front_page() -> None:
    assert {name for _, name in PLACES} == set(SECTIONS)
    assert (Path("README.md"), "front") in PLACES and (Path("docs/index.md"), "front") in PLACES
    for place, name in PLACES:  # the markers are there even while the test above skips
        section((ROOT / place).read_text(), name)


def test_rewrite_fills_a_section_from_its_folder_and_then_leaves_it(tmp_path: Path) -> None:
    records = []
    for number in range(3):
        for case, eff in (("lookup/sync/psycopg2", 0.1), ("lookup/async/asyncpg", 0.08)):
            for rtt, via, workers in ((0.0, "direct", 1), (5.0, "direct", 1), (0.0, "pgbouncer", 1), (0.0, "direct", 2)):
                record = make_record(case, round=number, eff=eff * (0.5 if rtt else 1.0))
                record["rtt_ms"], record["via"], record["workers"] = rtt, via, workers
                record["variant"] = (rtt, via, workers) != (0.0, "direct", 1)
                records.append(record)
    write_folder(tmp_path / FOLDERS["production"], records, make_run(records))
    page, readme = tmp_path / "docs" / "production.md", tmp_path / "README.md"
    page.parent.mkdir()
    start, end = markers("production")
    page.write_text(f"# x\n\n{start}\nstale\n{end}\n")
    readme.write_text(f"# x\n\n{markers('front')[0]}\nkept\n{markers('front')[1]}\n")
    places = ((Path("docs/production.md"), "production"), (Path("README.md"), "front"))
    assert rewrite(tmp_path, places) == ["docs/production.md:production"]  # results/default is absent: left alone
    production = section(page.read_text(), "production")
    assert "| `lookup/async/asyncpg` |" in production and "0 ms + PgBouncer" in production and "Crossover, measured" in production
    assert "/ reference [95%]" in production and "never measured side by side" in production
    assert "[`results/production/`](runs/production.md)" in production  # a page links the site's run page
    assert section(readme.read_text(), "front") == "kept\n"
    assert rewrite(tmp_path, places) == []


def test_a_file_that_lost_its_markers_is_named(tmp_path: Path) -> None:
    records = make_records()
    write_folder(tmp_path / FOLDERS["default"], records, make_run(records))
    (tmp_path / "README.md").write_text("# x\n")
    with pytest.raises(ValueError, match=r"README.md: no <!-- front:start -->"):
        rewrite(tmp_path, ((Path("README.md"), "front"),))


@pytest.fixture()
def default_run(tmp_path: Path) -> Path:
    records = make_records()
    for name in ("default", "drivers"):  # the drivers page reads a run of its own profile: here the same one
        write_folder(tmp_path / FOLDERS[name], records, make_run(records))
    return tmp_path


def test_the_sections_show_ratios_verdicts_and_how_long_things_took(default_run: Path) -> None:
    article = render("article", default_run, Path("docs/styles.md"))
    assert "| 3 `async` | 11.06 | 2 | `wait/async/asyncio` | 2.42 [2.42, 2.42] | 2.5 | yes | F2-wait PASS |" in article
    assert "| F2-wait | Async wins once clients outnumber threads | PASS | 2.42 [2.42, 2.42] | >= 1.58 (model, profile's shape) " \
           "| side by side | yes |" in article
    assert "A sample took 1.2 s of wall time, warm-up included (median; the longest 1.2 s); the whole run took 6 min 10 s." in article
    assert "steady state" in article and "[`results/default/`](runs/default.md)" in article
    model = render("model", default_run, Path("docs/model.md"))
    assert "**Predicted:" in model and "**Held-out: 8 of 8 sweep points**" in model
    assert "(runs/default.md#does-the-model-explain-each-case)" in model
    drivers = render("drivers", default_run, Path("docs/drivers.md"))
    assert "| lookup | **asyncpg** | async | 2 [2, 2] | side by side |" in drivers
    assert "- lookup: **fastest: `lookup/async/asyncpg`**" in drivers
    assert "| psycopg2 | 0.833 [0.833, 0.833] | side by side | 17% [17%, 17%] |" in drivers  # FastAPI's share
    assert "`psycopg2-threaded` / `psycopg2`" in drivers


def test_the_front_page_links_the_run_from_the_readme_and_from_the_site(default_run: Path) -> None:
    readme = render("front", default_run)
    assert "[`results/default/`](results/default/report.md)" in readme
    assert "| 2: `async def`, blocking call | 0.0307 | 0.0709 [0.0709, 0.0709] | 0.0739 [0.0739, 0.0739] " \
           "| F1-wait PASS, F1-psycopg2 PASS |" in readme
    assert "1. **Never call a blocking driver from `async def`**" in readme
    assert "[F1-psycopg2 PASS](results/default/report.md#findings)" in readme
    assert "3. **For point lookups, asyncpg was the fastest driver**" in readme and "(docs/drivers.md)" in readme
    assert "](results/default/throughput.png)" not in readme  # the synthetic folder has no plots
    site = render("front", default_run, Path("docs/index.md"))
    assert "[F1-psycopg2 PASS](runs/default.md#findings)" in site and "[choosing a driver](drivers.md)" in site


def test_the_front_page_plot_is_the_runs_own(default_run: Path) -> None:
    (default_run / FOLDERS["default"] / "throughput.png").write_bytes(b"")
    assert "](results/default/throughput.png)" in render("front", default_run)
    assert "](../results/default/throughput.png)" in render("front", default_run, Path("docs/index.md"))
    for name in ("default", "drivers"):
        (default_run / FOLDERS[name] / "drivers.png").write_bytes(b"")
    assert "](results/default/drivers.png)" in render("front", default_run)
    assert "](../results/drivers/drivers.png)" in render("drivers", default_run, Path("docs/drivers.md"))


def test_a_claim_the_run_did_not_confirm_is_not_stated_as_the_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # psycopg2 in async def at a third of its def route's rate: F1-psycopg2 fails.
    monkeypatch.setitem(synthetic.MAIN, "pg_sleep/async-blocking/psycopg2", 5.0)
    records = make_records()
    write_folder(tmp_path / FOLDERS["default"], records, make_run(records))
    text = render("front", tmp_path)
    assert "**Run verdict: 1 required finding(s) failed: F1-psycopg2.**" in text
    assert "Never call a blocking driver" not in text
    assert "1. That a blocking driver in `async def` collapses the route was not confirmed in this run" in text
    assert "[F1-psycopg2 FAIL](results/default/report.md#findings)" in text


def test_the_readme_command_rewrites_every_place_and_refuses_a_root_without_them(default_run: Path) -> None:
    result = CliRunner().invoke(cli, ["readme", "--root", str(default_run)])
    assert result.exit_code == 2 and "error: no README.md, docs/drivers.md" in result.output, result.output
    for place, name in PLACES:
        path = default_run / place
        path.parent.mkdir(exist_ok=True)
        start, end = markers(name)
        path.write_text((path.read_text() if path.exists() else "# x\n") + f"\n{start}\nstale\n{end}\n")
    result = CliRunner().invoke(cli, ["readme", "--root", str(default_run)])
    assert result.exit_code == 0, result.output
    # results/stability and results/production are absent here: their sections are left alone.
    assert "README.md:front, docs/index.md:front, docs/styles.md:article, docs/drivers.md:drivers, docs/model.md:model rewritten" \
        in " ".join(result.output.split())
    assert section((default_run / "docs/model.md").read_text(), "stability") == "stale\n"
    assert "already equal" in CliRunner().invoke(cli, ["readme", "--root", str(default_run)]).output
