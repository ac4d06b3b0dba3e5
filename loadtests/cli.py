"""iobench-load (python -m loadtests): measure the catalogue with ab, judge the findings, write a report."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.catalogue import DRIVERS, SCENARIOS_BY_ID, WORKLOADS, Style
from app.settings import Settings
from db.wire_proxy.rtt import MAX_RTT_MS, parse_rtt_ms
from loadtests import check
from loadtests.ab import find_ab, normalise_target
from loadtests.budget import Budget, connection_budget
from loadtests.check import SetupRun
from loadtests.claims import Claim, ClaimsError, load, schema_text
from loadtests.compare import ComparisonResult, compare_folders
from loadtests.environment import environment
from loadtests.errors import (
    EXIT_FINDING_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    HarnessError,
    Terminated,
    raise_terminated,
)
from loadtests.findings import FINDINGS, Verdict, evaluate_all, finding_pairs, required_failures, required_unsettled
from loadtests.locust_load import Swarm
from loadtests.plan import Block, Job, Pair, blocks, comparisons
from loadtests.profiles import PROFILES, RTT_DRIVERS, Profile, cases_for, narrow, rtt_swept
from loadtests.results import RESULTS, Record, RunFolder, default_run_dir
from loadtests.runner import Harness, fetch_config, finding_jobs, server_settings
from loadtests.shape import Difference, connection_shortfall, consequences, differences, matching_command, run_differences
from loadtests.stability import DriverRows, series
from loadtests.stats import Looks
from loadtests.steady import MIN_COMPLETIONS

if TYPE_CHECKING:
    from db.bootstrap import Database

console = Console()
cli = typer.Typer(add_completion=False, rich_markup_mode="rich")

EXIT_CODES_HELP = """
Exit status: 0 every required finding passed; 1 a required finding failed; 2 bad input
(nothing started); 3 the environment or the service failed (ab, the database, the service
died: the report keeps what was measured); 4 inconclusive (a required finding stayed
inconclusive, was not measured, or cannot be tested on this setup: never a pass); 130 Ctrl-C,
143 SIGTERM (the partial report is written). A selection (--scenario, --workload, --style,
--driver, --rtt-levels) judges only the findings whose cases it measured.
"""


def fail(message: str) -> typer.Exit:
    """A one-line error and the usage exit code, raised before any load is sent."""
    # soft_wrap: one line however narrow the console (Rich would otherwise break it at 80 columns off a terminal).
    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def _check_names(kind: str, given: list[str] | None, known: set[str]) -> set[str] | None:
    if not given:
        return None
    unknown = sorted(set(given) - known)
    if unknown:
        if len(known) > 12:  # the scenarios: suggest the nearest ids rather than list all of them
            near = list(dict.fromkeys(match for name in unknown for match in difflib.get_close_matches(name, sorted(known), n=3)))
            choices = (f"did you mean {', '.join(near)}? " if near else "") + "see --list"
        else:
            choices = f"choose from {', '.join(sorted(known))}"
        raise fail(f"unknown {kind} {', '.join(unknown)}; {choices}")
    return set(given)


def _levels(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise fail(f"--sweep-levels takes comma-separated integers, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise fail("--sweep-levels must be integers >= 1")
    return levels


def _counts(option: str, text: str) -> tuple[int, ...]:
    try:
        counts = tuple(dict.fromkeys(int(part) for part in text.split(",")))
    except ValueError:
        raise fail(f"{option} takes comma-separated integers, got {text!r}") from None
    if not counts or min(counts) < 1 or max(counts) > 16:
        raise fail(f"{option} takes worker counts from 1 to 16, got {text!r}")
    return counts


def _rtt(option: str, text: str) -> float:
    try:
        return parse_rtt_ms(text)
    except ValueError:
        raise fail(f"{option} takes milliseconds from 0 to {MAX_RTT_MS:g}, got {text!r}") from None


def _find_pgbouncer() -> None:
    from db.pgbouncer import PgBouncerMissingError, find_pgbouncer

    try:
        find_pgbouncer()
    except PgBouncerMissingError as exc:
        raise PgBouncerMissing(str(exc)) from None


class PgBouncerMissing(HarnessError):
    """--pgbouncer without a pgbouncer to run: its install hint, before anything starts."""


def _measure_compatibility(database_url: str) -> dict[str, object]:
    """Which drivers work through PgBouncer out of the box, and with their setting (``db.pgbouncer.compatibility``)."""
    from app.catalogue import DRIVERS
    from app.registry import resolve
    from db.pgbouncer.compatibility import measure_compatibility

    console.print("PgBouncer: measuring each driver's compatibility (transaction pooling) ...")
    table = measure_compatibility(database_url, {d.name: resolve(d.factory) for d in DRIVERS if d.pooled},
                                  driver_defaults={d.name for d in DRIVERS if d.defaults_of})
    failing = [entry.driver for entry in table.drivers if not entry.works_out_of_the_box]
    console.print("PgBouncer: out of the box, " + (f"{', '.join(failing)} fail" if failing else "every driver works")
                  + "; each run through it uses the driver's PgBouncer setting")
    return table.to_dict()


def _measure_rtts(database_url: str, levels: list[float]) -> dict[str, float]:
    """What the wire proxy really adds at each asked RTT (median SELECT 1 through it minus direct), printed and kept."""
    from db.wire_proxy import ProxyProcess
    from db.wire_proxy.probe import added_rtt_ms

    measured = {}
    for level in levels:
        with ProxyProcess(database_url, level) as proxy:
            measured[f"{level:g}"] = added_rtt_ms(database_url, proxy.url)
        console.print(f"wire proxy: asked {level:g} ms of round trip, measured {measured[f'{level:g}']:.2f} ms added")
    return measured


class LocustMissing(HarnessError):
    """--engine locust without Locust installed: its install hint, before anything starts."""


def _find_locust() -> None:
    import importlib.util

    if importlib.util.find_spec("locust") is None:
        raise LocustMissing("Locust is not installed: `pip install -c constraints.txt '.[locust]'` (make installs it)")


def _generators(text: str, engine: str, processes: int | None, expect_workers: int | None, profile: Profile,
                master_port: int) -> int | None:
    """``--generators`` as a count (None: auto), checked with the engine's options; bad input exits 2."""
    if engine not in ("ab", "locust"):
        raise fail(f"unknown --engine {engine!r}; choose from ab, locust")
    if text == "auto":
        count = None
    else:
        try:
            count = int(text)
        except ValueError:
            raise fail(f"--generators takes a count or auto, got {text!r}") from None
        if not 1 <= count <= 64:
            raise fail(f"--generators takes 1 to 64 processes, got {count}")
    if not 1 <= master_port <= 65535:
        raise fail(f"--master-port must be a TCP port, got {master_port}")
    for name, value in (("--processes", processes), ("--expect-workers", expect_workers)):
        if value is not None and not 1 <= value <= 64:
            raise fail(f"{name} takes 1 to 64 workers, got {value}")
    if engine == "ab":
        if processes is not None or expect_workers is not None:
            raise fail("--processes and --expect-workers drive Locust's workers: add --engine locust")
    else:
        if text != "1":
            raise fail("--generators splits c over ab processes; with --engine locust use --processes or --expect-workers")
        if (processes is None) == (expect_workers is None):
            raise fail("--engine locust needs exactly one of --processes N (local workers) or --expect-workers N")
    size = (count or 1) if engine == "ab" else (processes or expect_workers or 1)
    if profile.fixed_requests and (engine == "locust" or count != 1):
        raise fail(f"the {profile.name} profile runs ab start to end, as the article did: one ab, no other engine")
    if profile.concurrency < size:
        raise fail(f"{size} load generators need at least as many clients, got -c {profile.concurrency}")
    return count


@contextmanager
def _swarm(processes: int, expect_workers: int, bind: str, port: int, folder: Path) -> Iterator[Swarm]:
    """The Locust master (and local workers) for the whole run."""
    if expect_workers:
        console.print(f"Locust master on {bind}:{port}: waiting for {expect_workers} workers "
                      f"(`iobench-load worker --master HOST --master-port {port}`) ...")
    with Swarm(processes=processes, expect_workers=expect_workers, bind=bind, port=port if expect_workers else None,
               log_dir=folder) as swarm:
        console.print(f"Locust: {swarm.size} workers connected")
        yield swarm


def _check_target(target: str) -> str:
    try:
        url = normalise_target(target).rstrip("/")
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        httpx.get(f"{url}/ping", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise fail(f"no iobench service answers at {url} ({type(exc).__name__}); start one with `iobench serve`") from None
    return url


def _check_run_folder(path: Path, what: str) -> Path:
    if not (path / RESULTS).is_file():
        raise fail(f"{what}: no run folder at {path} (it has no {RESULTS})")
    return path


def _rounds(profile: Profile, planned: list[Block]) -> str:
    """The rounds a run measures, as its header and --list say them."""
    upto = (f", up to {profile.ranked_max_repeat} while wider than ±10%"
            if profile.ranked_max_repeat > max(profile.ranked_repeat, profile.repeat) else "")
    more = f" (the pairs a reader ranks: {profile.ranked_repeat}{upto})" if profile.ranked_repeat > profile.repeat else ""
    if profile.required_max_repeat > profile.repeat and any(block.required_pairs for block in planned):
        more += f" (a required finding's pair: up to {profile.required_max_repeat} while wider than ±10%)"
    return f"{profile.repeat} rounds{more}"


def _list(planned: list[Block], profile: Profile) -> None:
    samples = sum(block.samples() + len(block.sweeps) for block in planned)
    table = Table("block", "sequence of a round (compared pairs side by side)", "sweep points",
                  title=f"{len(planned)} blocks, {_rounds(profile, planned)}: {samples} samples")
    for block in planned:
        table.add_row(escape(block.name), escape(" | ".join(job.label for job in block.sequence)),
                      escape(", ".join(job.label for job in block.sweeps)))
    console.print(table)


def _print_differences(found: list[Difference], profile: str) -> None:
    """Where the server measured is not the profile's shape, and the command that would make it so."""
    if not found:
        return
    console.print(f"[bold yellow]The server measured is not shaped like the {profile} profile[/] (the findings' "
                  "thresholds assume that shape):", highlight=False)
    for difference in found:
        console.print(f"  {difference.describe()}", highlight=False, soft_wrap=True)
    console.print(f"  to measure the profile's shape, serve it with: {matching_command(found)}  "
                  f"(or: iobench serve --like {profile})", highlight=False, soft_wrap=True)


def _print_shape(run: dict[str, Any], verdicts: list[Verdict]) -> None:
    """Before the findings: the shape differences, and each verdict that follows from them."""
    _print_differences(run_differences(run), str((run.get("profile") or {}).get("name") or "default"))
    for consequence in consequences(verdicts, run):
        console.print(f"[yellow]{escape(consequence.describe())}[/]", highlight=False, soft_wrap=True)
    unselected = [v.finding.id for v in verdicts if v.status == "not selected"]
    if unselected:
        console.print(f"not judged (this selection measured not all of their cases): {', '.join(unselected)}",
                      highlight=False, soft_wrap=True)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def verdict_code(verdicts: list[Verdict]) -> int:
    """The exit code the findings give: failed beats inconclusive beats pass."""
    if required_failures(verdicts):
        return EXIT_FINDING_FAILED
    if required_unsettled(verdicts):
        return EXIT_INCONCLUSIVE
    return EXIT_PASS


def _print_verdicts(verdicts: list[Verdict]) -> None:
    if all(verdict.status == "not selected" for verdict in verdicts):
        return  # a selection that judges no finding: the line above says so
    table = Table("finding", "verdict", "ratio [95% interval]", "threshold", "rounds", title="Findings")
    colours = {"pass": "green", "fail": "red", "inconclusive": "yellow", "not measured": "dim", "not applicable": "dim",
               "not selected": "dim"}
    for verdict in verdicts:
        if verdict.status == "not selected" or (verdict.status == "not measured" and not verdict.finding.required):
            continue
        ratio = verdict.ratio
        text = f"{ratio.center:.3g} [{_fmt(ratio.low if ratio.bounded else None)}, {_fmt(ratio.high if ratio.bounded else None)}]" \
            if ratio else "-"
        required = "" if verdict.finding.required else " (not required)"
        table.add_row(verdict.finding.id, f"[{colours[verdict.status]}]{verdict.label.lower()}[/]{required}", text,
                      f"{verdict.finding.op} {_fmt(verdict.threshold)}", str(verdict.rounds))
    console.print(table)


def _print_crossovers(run: dict[str, Any], records: list[Record]) -> None:
    """An RTT run's answer, where people look first: the RTT at which each async driver beats its sync twin."""
    from loadtests.production import Crossover, rtt_series

    series = rtt_series(run, records)
    if series is None or len(series.levels) < 2:
        return
    for x in series.crossovers:
        ratios = ", ".join(f"{p.rtt_ms:g} ms {p.ratio.center:.2f}x" if p.ratio else f"{p.rtt_ms:g} ms -" for p in x.points)
        console.print(f"crossover {x.workload}: {x.asynchronous} over {x.synchronous} reaches {Crossover.WIN:g}x: "
                      f"{x.reached} (model: {x.predicted_reached}); the ratio at {ratios}", highlight=False)


def _render(folder: Path, compare: Path | None) -> tuple[Path, dict[str, Any], list[Verdict]]:
    from loadtests import legacy
    from loadtests.facts import model_fit
    from loadtests.heldout import TARGET_SHARE, judge
    from loadtests.report import write_report  # matplotlib and Jinja2 load only when a report is written
    from loadtests.summary import main_cases

    run, records = legacy.read(folder)  # a folder from before steady windows reads as ab's whole-run figures
    verdicts = evaluate_all(records, run)
    fit = model_fit(main_cases(records), run)
    classes = "; ".join(f"{k.kind} {k.hits} of {len(k.judged)}" for k in fit.classes if k.judged)
    misses = ", ".join(row.case.case for row in fit.misses[:8]) + (" ..." if len(fit.misses) > 8 else "")
    console.print(f"model: {classes or 'nothing judged'} within ×/÷ 1.25"
                  + (f"; misses (explained in the report): {escape(misses)}" if fit.misses else ""), highlight=False)
    held = judge(records, run)
    if held is not None and held.judged:
        console.print(f"held-out: {held.hits} of {len(held.judged)} sweep points within ×/÷ 1.25 of the prediction made "
                      f"before each ({held.share:.0%}; the test asks {TARGET_SHARE:.0%})", highlight=False)
    _print_crossovers(run, records)
    return write_report(folder, compare_with=compare), run, verdicts


def _paragraphs(text: str) -> str:
    """``text`` with each paragraph on one line: Rich rewraps help to the terminal, and a hard line break
    kept inside a sentence would show as a short line."""
    return "\n\n".join(" ".join(part.split()) for part in text.strip().split("\n\n"))


@cli.callback(invoke_without_command=True, help=_paragraphs(__doc__ + """

Without a command: run the load tests. Starts the service itself (uvicorn, with the
profile's threadpool and pool sizes) on a database it prepares (DATABASE_URL, else Postgres
on localhost:5432, else an embedded one), or measures a running one with `--target`.
The cases are measured in blocks, one server each, compared pairs side by side in every
round (`--list` shows them); each case is calibrated with one client first, and each sample
counts only a steady window of its ab run (the article profile: ab's whole run, as the
article did). The findings are judged on 95% intervals over the rounds (`--max-repeat`: more
rounds for an inconclusive required finding, every look at the Bonferroni level). The
default profile takes about ten minutes on 2 cores. Writes `runs/STAMP-PROFILE/`:
results.jsonl (one line per measurement, appended as it finishes), run.json, report.md,
report.html and PNG plots.
""" + EXIT_CODES_HELP))
def main_command(
    ctx: typer.Context,
    profile_name: Annotated[
        str,
        typer.Option(
            "--profile", "-p",
            help="quick (about three minutes, every case a required finding judges), default (the whole catalogue, about ten minutes on 2 cores) "
            "or article (3 s waits, -n 200 -c 100: hours).",
        ),
    ] = "default",
    target: Annotated[
        Optional[str],
        typer.Option(
            envvar="IOBENCH_TARGET",
            help="URL of a running service to measure (127.0.0.1/localhost only) instead of starting one. Start it "
            "shaped like the profile (`iobench serve --like quick`): the findings' thresholds assume that shape, and "
            "every difference is named before the findings.",
        ),
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder. Default: runs/UTC-STAMP-PROFILE.")] = None,
    workload: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Only this workload (repeatable): " + ", ".join(w.name for w in WORKLOADS if w.name != "hello") + ".",
        ),
    ] = None,
    style: Annotated[Optional[list[str]], typer.Option(help="Only this route style (repeatable): " + ", ".join(map(str, Style)) + ".")] = None,
    driver: Annotated[
        Optional[list[str]],
        typer.Option(help="Only scenarios using this driver (repeatable): " + ", ".join(d.name for d in DRIVERS) + "."),
    ] = None,
    scenario: Annotated[
        Optional[list[str]],
        typer.Option(help="Only this scenario id (repeatable), e.g. pg_sleep/async/asyncpg. See --list."),
    ] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", help="Concurrent ab clients (ab -c). Default: the profile's.")] = None,
    requests: Annotated[
        Optional[int],
        typer.Option(
            "--requests", "-n",
            help="Successful requests each sample counts in its steady window (after a warm-up, before ab is "
            "stopped), however long that takes. Default: the profile's (300 at the expected rate, the window "
            "lasting at least its measure time and at most its count window, 1 s). "
            "The article profile runs ab -n N -c C start to end instead, as the article did.",
        ),
    ] = None,
    repeat: Annotated[
        Optional[int],
        typer.Option("--repeat", "-k",
                     help="Rounds: how many times every case of a block is measured (default: the profile's, 3 for quick and default)."),
    ] = None,
    max_repeat: Annotated[
        Optional[int],
        typer.Option(help="Rounds a required finding may grow to while inconclusive, looking again at 5, 8 and 10 "
                     "rounds (those up to this number); every look is then judged at the Bonferroni level (97.5% for "
                     "two looks, 98.3% for three) so the chance "
                     "of a wrong verdict stays at 5%. Default: the profile's (5 for quick and default: two more rounds); "
                     "equal to --repeat means a fixed number of rounds, judged at 95%."),
    ] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", "-S", help="S, each of the two waits of wait/pg_sleep routes, in seconds.")] = None,
    keepalive: Annotated[bool, typer.Option(help="HTTP keep-alive (ab -k). Off by default, as in the article.")] = False,
    sweep: Annotated[
        bool,
        typer.Option(help="Also sweep concurrency for the profile's sweep scenarios (or the --scenario ones) and plot throughput and p99 against c."),
    ] = False,
    sweep_levels: Annotated[Optional[str], typer.Option(help="Comma-separated concurrency levels for --sweep. Default: the profile's.")] = None,
    threadpool_tokens: Annotated[Optional[int], typer.Option(help="AnyIO threadpool size of the started service. Default: the profile's.")] = None,
    pool_max: Annotated[
        Optional[int],
        typer.Option(help="Connection pool size of every driver of the started service. Default: the profile's. "
                     "The findings keep the profile's thresholds, so a server shaped otherwise is judged against it."),
    ] = None,
    worker_levels: Annotated[
        Optional[str],
        typer.Option(metavar="N,N,...",
                     help="Also measure every Postgres case on these uvicorn worker counts (e.g. 1,2), the threadpool "
                     "and pools split across the workers so the server's total capacity stays the profile's."),
    ] = None,
    pgbouncer: Annotated[
        bool,
        typer.Option("--pgbouncer",
                     help="Also measure every Postgres case through PgBouncer (transaction pooling, Debian's pgbouncer), "
                     "each driver at its documented PgBouncer setting, and first measure which drivers work through it "
                     "out of the box."),
    ] = False,
    workers: Annotated[Optional[int], typer.Option(help="uvicorn worker processes of the started service. Default: the profile's.")] = None,
    db_rtt: Annotated[
        Optional[str],
        typer.Option("--db-rtt", metavar="MS",
                     help="Put the database MS milliseconds of round trip away: the wire proxy (db/wire_proxy) sits "
                     "between the service and Postgres and delays every message by MS/2 each way. 0 to 100."),
    ] = None,
    rtt_levels: Annotated[
        Optional[str],
        typer.Option(metavar="MS,MS,...",
                     help="Also measure the lookup, report and write cases of psycopg2, psycopg 3 and asyncpg at these RTTs "
                     "(e.g. 0,0.5,1,2,5), plot throughput against RTT and report where async starts to win."),
    ] = None,
    compare: Annotated[
        Optional[Path],
        typer.Option(help="An earlier run folder: the report marks throughput regressions and findings that changed."),
    ] = None,
    generators: Annotated[
        str,
        typer.Option(metavar="N|auto",
                     help="ab processes per sample, splitting c between them (ab is single-threaded: one core of load "
                     "each); their completions are counted together in the same steady window. auto: enough to keep each "
                     "under 70% of a core, from the CPU one ab spent per request in the calibration."),
    ] = "1",
    engine: Annotated[
        str,
        typer.Option(help="What makes the load: ab, or locust (Locust's FastHttpUser, c closed-loop users with no wait, "
                     "from --processes local workers or --expect-workers workers started with `iobench-load worker`)."),
    ] = "ab",
    processes: Annotated[Optional[int], typer.Option(help="--engine locust: Locust worker processes started on this machine.")] = None,
    expect_workers: Annotated[
        Optional[int],
        typer.Option(help="--engine locust: wait for this many workers started elsewhere with `iobench-load worker --master HOST`."),
    ] = None,
    master_bind: Annotated[
        str,
        typer.Option(help="--engine locust: the address the Locust master listens on for workers (0.0.0.0 for other hosts)."),
    ] = "127.0.0.1",
    master_port: Annotated[int, typer.Option(help="--engine locust --expect-workers: the Locust master's port.")] = 5557,
    list_only: Annotated[bool, typer.Option("--list", help="Print the cases this command would measure, and exit.")] = False,
    show_version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if show_version:
        console.print(f"iobench-load {package_version('iobench')}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is not None:
        return
    if profile_name not in PROFILES:
        raise fail(f"unknown profile {profile_name!r}; choose from {', '.join(PROFILES)}")
    for name, value in (("--concurrency", concurrency), ("--requests", requests), ("--threadpool-tokens", threadpool_tokens),
                        ("--pool-max", pool_max), ("--workers", workers), ("--repeat", repeat), ("--max-repeat", max_repeat)):
        if value is not None and value < 1:
            raise fail(f"{name} must be >= 1, got {value}")
    base_rtt = _rtt("--db-rtt", db_rtt) if db_rtt is not None else None
    levels_rtt = tuple(dict.fromkeys(_rtt("--rtt-levels", part) for part in rtt_levels.split(","))) if rtt_levels else ()
    levels_workers = _counts("--worker-levels", worker_levels) if worker_levels else ()
    if seconds is not None and not 0 <= seconds <= 60:
        raise fail(f"--seconds must be between 0 and 60, got {seconds}")
    if compare is not None:
        _check_run_folder(compare, "--compare")
    if out is not None and (out / RESULTS).exists():
        raise fail(f"--out {out} already holds a run; choose a new folder (runs are never mixed)")
    preset = PROFILES[profile_name]
    profile = dataclasses.replace(
        preset,
        seconds=preset.seconds if seconds is None else seconds,
        concurrency=preset.concurrency if concurrency is None else concurrency,
        threadpool_tokens=preset.threadpool_tokens if threadpool_tokens is None else threadpool_tokens,
        pool_max=preset.pool_max if pool_max is None else pool_max,
        workers=preset.workers if workers is None else workers,
        db_rtt_ms=preset.db_rtt_ms if base_rtt is None else base_rtt,
    )
    if repeat is not None or max_repeat is not None:
        rounds = repeat or profile.repeat
        profile = dataclasses.replace(profile, repeat=rounds, max_repeat=max(rounds, max_repeat or rounds))
    if profile.fixed_requests and profile.concurrency > (requests or profile.fixed_requests):
        raise fail(f"--requests ({requests}) must be at least --concurrency ({profile.concurrency}): ab needs n >= c")
    if not profile.fixed_requests and requests is not None and requests < MIN_COMPLETIONS:
        raise fail(f"--requests ({requests}) must be at least {MIN_COMPLETIONS}: a steady window needs that many "
                   "completions for a rate")
    levels = _levels(sweep_levels) or profile.sweep_levels
    generator_count = _generators(generators, engine, processes, expect_workers, profile, master_port)

    workloads = _check_names("workload", workload, {w.name for w in WORKLOADS})
    styles = _check_names("style", style, {str(s) for s in Style})
    drivers = _check_names("driver", driver, {d.name for d in DRIVERS})
    chosen = _check_names("scenario", scenario, set(SCENARIOS_BY_ID))
    base = [SCENARIOS_BY_ID[s] for s in SCENARIOS_BY_ID if s in chosen] if chosen else profile.scenarios()
    selected = narrow(base, workloads, styles, drivers)
    if not selected:
        raise fail("no scenario matches these filters; see --list")
    jobs = [Job(case, profile.concurrency, rtt_ms=profile.db_rtt_ms) for case in profile.cases(selected)]
    jobs += finding_jobs(jobs, FINDINGS)
    levels_rtt = levels_rtt or PROFILES[profile_name].rtt_levels
    levels_workers = levels_workers or PROFILES[profile_name].worker_levels
    pgbouncer = pgbouncer or PROFILES[profile_name].pgbouncer
    if (base_rtt or levels_rtt or pgbouncer or levels_workers) and target:
        raise fail("--db-rtt, --rtt-levels, --pgbouncer and --worker-levels (or a profile that uses them) need a service "
                   "started here, not --target")
    rtt_jobs = [job for job in jobs if not job.for_finding and rtt_swept(job.case.scenario)]
    jobs += [dataclasses.replace(job, rtt_ms=level, variant=True)
             for level in levels_rtt if level != profile.db_rtt_ms for job in rtt_jobs]
    if levels_rtt and not rtt_jobs:
        raise fail("--rtt-levels measures lookup, report and write on " + ", ".join(RTT_DRIVERS) + "; none is selected")
    pooled = [job for job in jobs if not job.for_finding and job.case.scenario.driver.pooled]
    if (pgbouncer or levels_workers) and not pooled:
        raise fail("--pgbouncer and --worker-levels measure the Postgres cases; none is selected")
    jobs += [dataclasses.replace(job, via="pgbouncer", variant=True) for job in pooled if pgbouncer]
    jobs += [dataclasses.replace(job, workers=count, variant=True)
             for count in levels_workers if count != profile.workers for job in pooled]
    if sweep:
        sweep_ids = set(chosen or profile.sweep_ids)
        for swept in (s for s in selected if s.id in sweep_ids):
            jobs += [Job(case, level, sweep=True) for case in cases_for(swept, profile.seconds) for level in levels]
    pairs = comparisons(finding_pairs(FINDINGS),
                        all_to_reference=profile.all_to_reference, cases=[job.case.key for job in jobs])
    planned = blocks(jobs, pairs, profile.concurrency, rounds=profile.repeat, ranked_rounds=profile.ranked_repeat,
                     required=[f.id for f in FINDINGS if f.required])
    if list_only:
        _list(planned, profile)
        raise typer.Exit(0)

    try:
        ab_path = find_ab()
        if pgbouncer:
            _find_pgbouncer()
        if engine == "locust":
            _find_locust()
    except HarnessError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    target_url = _check_target(target) if target else None
    if target_url:
        served = fetch_config(target_url)
        _print_differences(differences(served, profile.declared(), profile.db_rtt_ms), profile.name)
        if (shortfall := connection_shortfall(served)) is not None:
            console.print(f"[bold yellow]note:[/] {escape(shortfall)}", highlight=False, soft_wrap=True)
    settings = server_settings(Settings(), profile)
    database, budget = None, None
    if not target_url:
        from app.prepare import locate

        database = locate(settings)
        settings = settings.model_copy(update={"database_url": database.url})
        budget = connection_budget(settings, planned, profile.pgbouncer_pool_size)
        if not budget.fits:  # before any folder, server or load: like any other bad setting
            database.close()
            raise fail(budget.describe())
    folder = RunFolder(out or default_run_dir(profile.name))
    try:
        exit_code, _ = _execute(folder, profile, planned, pairs, jobs, settings=settings, database=database, budget=budget,
                                target_url=target_url, ab_path=ab_path, keepalive=keepalive, requests=requests,
                                compatibility=pgbouncer, compare=compare,
                                selection=bool(workloads or styles or drivers or chosen or rtt_levels),
                                load=LoadEngine(engine, generator_count, processes, expect_workers, master_bind, master_port))
    finally:
        if database is not None:
            database.close()
    raise typer.Exit(exit_code)


@dataclass(frozen=True)
class LoadEngine:
    """What makes a run's load: ``generators`` ab processes (None: auto), or Locust's workers."""

    engine: str = "ab"
    generators: int | None = 1
    processes: int | None = None
    expect_workers: int | None = None
    master_bind: str = "127.0.0.1"
    master_port: int = 5557


def _execute(folder: RunFolder, profile: Profile, planned: list[Block], pairs: list[Pair], jobs: list[Job], *,
             settings: Settings, database: Database | None, budget: Budget | None, target_url: str | None, ab_path: str,
             keepalive: bool, requests: int | None, compatibility: bool, compare: Path | None, selection: bool,
             claims: tuple[Claim, ...] | None = None, prepare_database: bool = True, link: bool = True,
             load: LoadEngine = LoadEngine()) -> tuple[int, list[Verdict]]:
    """Measure ``planned`` into ``folder``, render its report, print the verdicts: (exit code, verdicts).

    ``claims``: a team's claims, recorded in run.json (the run judges them, not iobench's findings)."""
    samples = sum(block.samples() + len(block.sweeps) for block in planned)
    looks = Looks.planned(profile.repeat, profile.max_repeat)
    console.print(f"iobench: profile [bold]{profile.name}[/bold], {len(planned)} blocks x {_rounds(profile, planned)}, "
                  f"{samples} samples -> {folder.path}")
    exit_code, status, error = 0, "complete", None
    previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        if database is None:
            source = f"target {target_url}"
        else:
            from app.prepare import prepare

            if prepare_database:
                console.print(f"database: {database.describe()}; preparing (migrate, seed {settings.seed_rows} rows) ...")
                prepare(database.url, settings)
            source = database.source
            assert budget is not None
            console.print(budget.describe(), highlight=False)
            folder.write_run(connection_budget=budget.to_dict())
            if rtts := sorted({job.rtt_ms for job in jobs if job.rtt_ms}):
                folder.write_run(rtt_measured=_measure_rtts(database.url, rtts))
            if compatibility:
                folder.write_run(pgbouncer=_measure_compatibility(database.url))
        judged = FINDINGS if claims is None else claims
        folder.write_run(
            profile=profile.to_dict(), command=sys.argv, status="running", planned=samples,
            started=datetime.now(UTC).isoformat(timespec="seconds"), environment=environment(ab_path, source),
            findings=[f.id for f in judged], error=None, drivers=[d.to_dict() for d in DRIVERS],
            looks=looks.to_dict(), selection=selection,
            # What a selection measures: findings with a case outside it are not judged (findings.evaluate_all).
            selected_cases=sorted({job.case.key for block in planned for job in (*block.sequence, *block.sweeps)}),
            blocks=[{"name": b.name, "sequence": [j.label for j in b.sequence], "sweeps": [j.label for j in b.sweeps]}
                    for b in planned],
            pairs=[{"numerator": p.numerator, "denominator": p.denominator, "why": p.why, "concurrency": p.concurrency}
                   for p in pairs],
            **({} if claims is None else {"claims": [claim.model_dump(mode="json") for claim in claims]}),
        )
        with ExitStack() as stack:
            swarm = None
            if load.engine == "locust":
                swarm = stack.enter_context(_swarm(load.processes or 0, load.expect_workers or 0, load.master_bind,
                                                   load.master_port, folder.path))
            folder.write_run(load={"engine": load.engine, "generators": "auto" if load.generators is None else load.generators,
                                   "processes": load.processes, "expect_workers": load.expect_workers})
            Harness(profile, planned, pairs, folder, console, settings=settings, target=target_url, keepalive=keepalive,
                    requests=requests, findings=judged, generators=load.generators, swarm=swarm,
                    judge=lambda records, level: evaluate_all(records, folder.run, confidence=level)).run()
    except Terminated:
        exit_code, status, error = EXIT_SIGTERM, "interrupted", "stopped by SIGTERM"
    except KeyboardInterrupt:
        exit_code, status, error = EXIT_SIGINT, "interrupted", "interrupted by the user (Ctrl-C)"
    except HarnessError as exc:
        exit_code, status, error = exc.exit_code, "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a database that cannot be prepared: keep what was measured
        exit_code, status, error = HarnessError.exit_code, "failed", f"{type(exc).__name__}: {exc}"
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        folder.write_run(status=status, error=error, finished=datetime.now(UTC).isoformat(timespec="seconds"))
    if error:
        console.print(f"[bold red]{status}:[/bold red] {escape(error)}", highlight=False)  # a log tail is no markup
    report, run, verdicts = _render(folder.path, compare)
    if link:
        _link_latest(folder.path)
    _print_shape(run, verdicts)
    _print_verdicts(verdicts)
    exit_code = exit_code or verdict_code(verdicts)
    folder.write_run(exit_code=exit_code, verdicts=[v.to_dict() for v in verdicts])
    console.print(f"report: {report} (and {report.with_suffix('.html').name})")
    return exit_code, verdicts


@cli.command("worker", help="Run a Locust worker for a harness started with --engine locust --expect-workers N: it connects "
             "to the master at --master, takes the cases the master names (routes of the catalogue on 127.0.0.1 or "
             "localhost only) and quits with it.")
def worker_command(
    master: Annotated[str, typer.Option(help="Host of the harness running the Locust master.")],
    master_port: Annotated[int, typer.Option(help="The master's port.")] = 5557,
) -> None:
    if not 1 <= master_port <= 65535:
        raise fail(f"--master-port must be a TCP port, got {master_port}")
    try:
        _find_locust()
    except HarnessError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    # Locust patches the standard library for gevent when imported: it runs in a process of its own.
    os.execv(sys.executable, [sys.executable, "-m", "loadtests.swarm", "worker", "--master", master,
                              "--master-port", str(master_port)])


@cli.command("report", help="Render report.md, report.html and the plots of an existing run folder again, "
             "without measuring, and print its verdicts. Exits with the verdicts' code (0, 1 or 4; 2 for a bad folder).")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (it holds results.jsonl).")],
    compare: Annotated[Optional[Path], typer.Option(help="An earlier run folder to compare with.")] = None,
) -> None:
    _check_run_folder(run_dir, "report")
    if compare is not None:
        _check_run_folder(compare, "--compare")
    report, run, verdicts = _render(run_dir, compare)
    _print_shape(run, verdicts)
    _print_verdicts(verdicts)
    console.print(f"report: {report}")
    raise typer.Exit(verdict_code(verdicts))


#: Exit codes after which a check measures no further setup (a setup whose service died does not stop the others).
_STOPPED = (EXIT_SIGINT, EXIT_SIGTERM)


def _claims_error(file: str, claim: Claim, field: str, message: str) -> typer.Exit:
    return fail(str(ClaimsError(file, claim.id, field, message)))


def _over_budget_field(run: SetupRun) -> tuple[Claim, str]:
    """The claim and setup key to name when a setup's pools do not fit the server."""
    for key in ("pool_max", "workers", "threadpool_tokens", "pgbouncer"):
        for claim in run.claims:
            if getattr(claim.setup, key):
                return claim, f"setup.{key}"
    return run.claims[0], "setup.pool_max"


@cli.command("check", help="Check a team's own architecture claims: measure only the cases the claims files name (one "
             "server per distinct setup, compared cases side by side in the same interleaved rounds as a run), judge "
             "each claim on its 95% interval, and write one run folder per setup under runs/STAMP-check/ (check.json "
             "says which claims and cases each measured), JUnit XML (--junit) and a Markdown summary (--summary). "
             "The claims file format: README.md, \"Check your own architecture claims\"; its JSON Schema: "
             "`iobench-load claims-schema`. Exit status: 0 every required claim passed, 1 one failed, 2 a bad claims "
             "file or option (named by file, claim and field; nothing started), 3 the environment failed, 4 a required "
             "claim inconclusive, not measured or not testable here.")
def check_command(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Claims files (TOML).", show_default=False)] = None,
    claims_files: Annotated[Optional[list[Path]], typer.Option("--claims", help="A claims file (repeatable), as an argument would.")] = None,
    junit_path: Annotated[Optional[Path], typer.Option("--junit", help="Also write the JUnit XML here (one test case per claim).")] = None,
    summary_path: Annotated[Optional[Path], typer.Option("--summary", help="Also write the Markdown summary here (e.g. a CI job summary).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="The check folder. Default: runs/UTC-STAMP-check.")] = None,
    profile_name: Annotated[str, typer.Option("--profile", "-p", help="The base every setup key a claim omits comes from "
                                              "(S, clients, threadpool, pools, workers), with its rounds and windows.")] = "quick",
    repeat: Annotated[Optional[int], typer.Option("--repeat", "-k", help="Rounds per setup. Default: the profile's.")] = None,
    max_repeat: Annotated[Optional[int], typer.Option(help="Rounds a required claim may grow to while inconclusive. Default: the profile's.")] = None,
    list_only: Annotated[bool, typer.Option("--list", help="Print the setups, their claims and cases, and exit.")] = False,
) -> None:
    paths = [*(files or []), *(claims_files or [])]
    if not paths:
        raise fail("check needs at least one claims file (iobench-load check FILE... or --claims FILE)")
    for path in paths:
        if not path.is_file():
            raise fail(f"{path}: no such claims file")
    try:
        loaded = load(paths)
    except ClaimsError as exc:
        raise fail(str(exc)) from None
    file_of = {claim.id: file for file, claim in loaded}
    claims = tuple(claim for _, claim in loaded)
    for claim in claims:
        if claim.far:
            raise _claims_error(file_of[claim.id], claim, "setup.db_rtt_ms", "\"largest\" judges a run of several RTT "
                                "levels (iobench-load --rtt-levels); a check measures one RTT per setup: give milliseconds")
    if profile_name not in PROFILES or PROFILES[profile_name].fixed_requests:
        raise fail(f"--profile takes a steady-window profile: {', '.join(n for n, p in PROFILES.items() if not p.fixed_requests)}")
    for name, value in (("--repeat", repeat), ("--max-repeat", max_repeat)):
        if value is not None and value < 2:
            raise fail(f"{name} must be >= 2 (an interval needs two rounds), got {value}")
    if out is not None and out.exists():
        raise fail(f"--out {out} already exists; choose a new folder (runs are never mixed)")
    base = PROFILES[profile_name]
    if repeat is not None or max_repeat is not None:
        rounds = repeat or base.repeat
        base = dataclasses.replace(base, repeat=rounds, max_repeat=max(rounds, max_repeat or rounds))
    runs = check.plan(claims, base)
    if list_only:
        for run in runs:
            console.print(f"[bold]{run.name}[/bold] ({escape(run.setup.describe())}): claims {', '.join(c.id for c in run.claims)}",
                          highlight=False)
            _list(list(run.planned), run.profile)
        raise typer.Exit(0)
    try:
        ab_path = find_ab()
        if any(run.setup.pgbouncer for run in runs):
            _find_pgbouncer()
    except HarnessError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    from app.prepare import locate

    database = locate(server_settings(Settings(), runs[0].profile))
    try:
        budgets = []
        for run in runs:
            settings = server_settings(Settings(), run.profile).model_copy(update={"database_url": database.url})
            budget = connection_budget(settings, list(run.planned), run.profile.pgbouncer_pool_size)
            if not budget.fits:  # before any folder, server or load
                claim, field = _over_budget_field(run)
                raise _claims_error(file_of[claim.id], claim, field, budget.describe())
            budgets.append((settings, budget))
        folder = out or default_run_dir("check")
        folder.mkdir(parents=True)
        record = {"command": sys.argv, "profile": profile_name, "files": [str(p) for p in paths],
                  "claims": [{"file": file, **claim.model_dump(mode="json")} for file, claim in loaded],
                  "setups": [run.to_dict() for run in runs]}
        (folder / check.CHECK).write_text(json.dumps(record, indent=2))
        started, exit_code, verdicts = time.monotonic(), 0, {}
        for index, (run, (settings, budget)) in enumerate(zip(runs, budgets, strict=True)):
            if exit_code in _STOPPED:
                break
            console.print(f"[bold]{run.name}[/bold]: {escape(run.setup.describe())}; claims "
                          f"{', '.join(c.id for c in run.claims)}; cases {escape(', '.join(run.cases))}", highlight=False)
            if index:  # a shared server: other clients may have taken connections since the check began
                budget = connection_budget(settings, list(run.planned), run.profile.pgbouncer_pool_size)
                if not budget.fits:
                    console.print(f"[bold red]{run.name} not measured:[/bold red] {escape(budget.describe())}", highlight=False)
                    exit_code = exit_code or HarnessError.exit_code
                    continue
            code, found = _execute(RunFolder(folder / run.name), run.profile, list(run.planned), list(run.pairs),
                                   list(run.jobs), settings=settings, database=database, budget=budget, target_url=None,
                                   ab_path=ab_path, keepalive=run.setup.keepalive, requests=None, compatibility=False,
                                   compare=None, selection=True, claims=run.claims, prepare_database=index == 0, link=False)
            verdicts.update({v.finding.id: v for v in found})
            exit_code = code if code in (*_STOPPED, HarnessError.exit_code) else exit_code
    finally:
        database.close()
    judged = [(file_of[c.id], verdicts.get(c.id) or evaluate_all([], {}, (c,))[0]) for c in claims]
    exit_code = exit_code or verdict_code([v for _, v in judged])
    for _, verdict in judged:
        if verdict.bar and verdict.bar.source != "claim":  # a threshold from the model says how it was derived
            console.print(f"{verdict.finding.id}: threshold {escape(verdict.bar.reason)}", highlight=False)
    xml = check.junit(judged, time.monotonic() - started)
    text = check.summary(judged, runs, exit_code, folder)
    for written, content in ((folder / check.JUNIT, xml), (junit_path, xml), (folder / check.SUMMARY, text), (summary_path, text)):
        if written is not None:
            written.parent.mkdir(parents=True, exist_ok=True)
            written.write_text(content)
    (folder / check.CHECK).write_text(json.dumps({**record, "exit_code": exit_code, "seconds": round(time.monotonic() - started),
                                                  "verdicts": [{"file": f, **v.to_dict()} for f, v in judged]}, indent=2))
    _link_latest(folder)
    console.print(f"check: {len(judged)} claims, {len(runs)} setup(s), exit {exit_code}; {folder / check.SUMMARY}"
                  + (f", JUnit {junit_path}" if junit_path else ""), highlight=False)
    raise typer.Exit(exit_code)


@cli.command("claims-schema", help="Print the claims file's JSON Schema (the one loadtests/claims/schema.json publishes).")
def claims_schema_command() -> None:
    sys.stdout.write(schema_text())


def _print_comparison(result: ComparisonResult) -> None:
    ratios = Table("numerator", "denominator", "why", "old ratio", "new ratio", "change", "status",
                   title=f"paired ratios, {result.old_label} -> {result.new_label} (tolerance {result.tolerance:.0%})")
    for ratio in result.ratios:
        colour = "yellow" if ratio.moved else "default"
        ratios.add_row(escape(ratio.numerator), escape(ratio.denominator), escape(ratio.why),
                       _fmt(ratio.old.center if ratio.old else None), _fmt(ratio.new.center if ratio.new else None),
                       "-" if ratio.change_pct is None else f"{ratio.change_pct:+.0f}%", f"[{colour}]{ratio.status}[/]")
    console.print(ratios)
    table = Table("case", "old rps", "new rps", "change", "status", "note",
                  title=f"absolute rates (each run's machine at its time), {result.old_label} -> {result.new_label}")
    order = {"regression": 0, "improvement": 1, "new": 2, "gone": 3, "same": 4}
    for row in sorted(result.rows, key=lambda r: (order[r.status], r.case)):
        colour = {"regression": "red", "improvement": "green"}.get(row.status, "default")
        table.add_row(escape(row.case), _fmt(row.old.center if row.old else None), _fmt(row.new.center if row.new else None),
                      "-" if row.change_pct is None else f"{row.change_pct:+.0f}%", f"[{colour}]{row.status}[/]", escape(row.note))
    console.print(table)
    for change in result.verdict_changes:
        console.print(f"finding {change.id}: {change.old} -> {change.new}" + (" [red](regression)[/red]" if change.regression else ""))


@cli.command("compare", help="Compare two existing run folders on what each measured side by side: the findings' "
             "and the other paired ratios (95% intervals), and the verdicts; absolute rates are listed as each run's "
             "state. Exits 1 when a finding went from pass to fail or a case stopped answering, else 0.")
def compare_command(
    old_dir: Annotated[Path, typer.Argument(help="The earlier run folder.")],
    new_dir: Annotated[Path, typer.Argument(help="The later run folder.")],
    tolerance: Annotated[float, typer.Option(help="A throughput change smaller than this share is never a regression.")] = 0.15,
) -> None:
    _check_run_folder(old_dir, "compare")
    _check_run_folder(new_dir, "compare")
    result = compare_folders(old_dir, new_dir, tolerance)
    _print_comparison(result)
    raise typer.Exit(EXIT_FINDING_FAILED if result.has_regressions else 0)


@cli.command("stability", help="Line up the verdicts of repeated runs of the same setup (grouped by profile) and print, "
             "per finding, how often its verdict changed; where the runs kept their records, also the driver table's rows "
             "run by run (how many within the profile's ±10%, which rows' intervals do not overlap, the fastest driver per "
             "workload). Exits 1 when a required verdict changed or a run's exit code does not follow from its verdicts "
             "(0, or 4 for a profile that measures no required finding).")
def stability_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders, oldest first.")],
) -> None:
    for run_dir in run_dirs:
        if not (run_dir / "run.json").is_file():
            raise fail(f"stability: no run folder at {run_dir} (it has no run.json)")
    unstable = False
    for group in series(run_dirs):
        table = Table("finding", "required", *[f"run {i + 1}" for i in range(len(group.folders))], "changes",
                      title=f"profile {group.profile}: {len(group.folders)} runs, exit codes "
                      + ", ".join("?" if c is None else str(c) for c in group.exit_codes))
        for flips in group.flips:
            table.add_row(flips.id, "yes" if flips.required else "no", *[label.lower() for label in flips.labels],
                          f"[red]{flips.changes}[/]" if flips.changes and flips.required else str(flips.changes))
        console.print(table)
        if group.drivers is not None:
            console.print(_driver_rows_table(group.drivers))
        console.print(f"profile {group.profile}: {group.required_changes} change(s) of a required verdict")
        unstable = unstable or group.required_changes > 0 or bool(group.unexpected_exits)
    raise typer.Exit(EXIT_FINDING_FAILED if unstable else 0)


def _driver_rows_table(rows: DriverRows) -> Table:
    """The driver table's rows run by run, and what the series says of them (``stability.DriverRows``)."""
    runs = len(rows.rows[0].intervals)
    table = Table("workload", "driver", *[f"run {n + 1}" for n in range(runs)], "apart",
                  title="driver table: each driver over psycopg2, 95% (rounds)")
    for row in rows.rows:
        cells = ["-" if i is None else f"{i.center:.3g} [{i.low:.3g}, {i.high:.3g}] ({n})"
                 + ("" if rows.narrow(i) else " wide")
                 for i, n in zip(row.intervals, row.rounds, strict=True)]
        table.add_row(row.workload, row.driver, *cells, "[red]yes[/]" if row.apart else "no")
    within = ", ".join(f"{n} of {len(rows.rows)}" for n in rows.within())
    fastest = "; ".join(f"{workload}: " + ", ".join(case.split("/")[-1] if case else "-" for case in cases)
                        for workload, cases in rows.fastest.items())
    table.caption = (f"rows within ±{math.expm1(rows.half_width):.0%}: {within}; rows whose intervals do not all "
                     f"overlap: {rows.apart} of {len(rows.rows)}; fastest, resolved (- where not): {fastest}")
    return table


@cli.command("size-check", help="Measure one case with steady windows of N and of FACTOR x N successful completions, "
             "alternated on one server (A B, B A, ...), and print each pair's ratio and their median: a figure that "
             "means what it says does not depend on the sample's size (ab's whole-run rate does). Uses the profile's "
             "server shape and concurrency.")
def size_check_command(
    scenario: Annotated[str, typer.Argument(help="A scenario id, e.g. lookup/async/asyncpg (see --list).")],
    requests: Annotated[int, typer.Option("--requests", "-n", help="Completions in the short window.")] = 200,
    factor: Annotated[int, typer.Option(help="The long window holds FACTOR x N completions.")] = 4,
    pairs: Annotated[int, typer.Option(help="Pairs of windows.")] = 3,
    profile_name: Annotated[str, typer.Option("--profile", "-p", help="The server shape and concurrency.")] = "default",
    seconds: Annotated[Optional[float], typer.Option("--seconds", "-S", help="S of wait/pg_sleep routes.")] = None,
) -> None:
    from app.prepare import locate, prepare
    from loadtests.sizecheck import median_ratio, size_pairs

    if scenario not in SCENARIOS_BY_ID:
        raise fail(f"unknown scenario {scenario}; see --list")
    if profile_name not in PROFILES or requests < 5 or factor < 2 or pairs < 1:
        raise fail("size-check needs a known profile, -n >= 5, --factor >= 2 and --pairs >= 1")
    profile = PROFILES[profile_name]
    if seconds is not None:
        profile = dataclasses.replace(profile, seconds=seconds)
    find_ab()
    case = cases_for(SCENARIOS_BY_ID[scenario], profile.seconds)[0]
    settings = server_settings(Settings(), profile)
    database = locate(settings)
    try:
        settings = settings.model_copy(update={"database_url": database.url})
        prepare(database.url, settings)
        folder = RunFolder(default_run_dir(f"size-check-{profile.name}"))
        folder.write_run(command=sys.argv, profile=profile.to_dict(), environment=environment(find_ab(), database.source),
                         started=datetime.now(UTC).isoformat(timespec="seconds"))
        harness = Harness(profile, [], [], folder, console, settings=settings, count_work=False)
        found = size_pairs(harness, Job(case, profile.concurrency), requests, factor, pairs)
    finally:
        database.close()
    folder.write_run(finished=datetime.now(UTC).isoformat(timespec="seconds"), size_check={
        "case": case.key, "concurrency": profile.concurrency, "factor": factor, "median_ratio": median_ratio(found),
        "pairs": [dataclasses.asdict(pair) | {"ratio": pair.ratio} for pair in found]})
    for number, pair in enumerate(found, start=1):
        console.print(f"pair {number}: {pair.short_completions} completions {_fmt(pair.short_rps)} rps, "
                      f"{pair.long_completions} completions {_fmt(pair.long_rps)} rps: ratio {_fmt(pair.ratio)}",
                      highlight=False)
    console.print(f"{case.key} at c = {profile.concurrency}: median ratio of {factor}n to n {_fmt(median_ratio(found))} "
                  f"({folder.path / 'run.json'})", highlight=False)


@cli.command("agreement", help="Measure one case with one ab, with --generators ab processes and with Locust "
             "(--processes local workers), one sample of each per round, in alternating rounds on one server, and print "
             "each engine's median rate over one ab's in the same round, each generator's CPU and the service's: where "
             "no generator is the bottleneck, the engines must agree. Writes its samples and the table to a run folder.")
def agreement_command(
    scenario: Annotated[str, typer.Argument(help="A scenario id, e.g. lookup/async/asyncpg or hello/async/none (see --list).")],
    generators: Annotated[int, typer.Option(help="ab processes of the second engine (0: leave it out).")] = 2,
    processes: Annotated[int, typer.Option(help="Locust worker processes (0: leave Locust out).")] = 2,
    rounds: Annotated[int, typer.Option(help="Rounds: one sample of every engine each.")] = 3,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", help="Clients. Default: the profile's.")] = None,
    window: Annotated[Optional[float], typer.Option(help="Seconds a steady window lasts at least. Default: the profile's.")] = None,
    margin: Annotated[float, typer.Option(help="An engine agrees when its median ratio to one ab is within this share of 1.")] = 0.10,
    profile_name: Annotated[str, typer.Option("--profile", "-p", help="The server shape and concurrency.")] = "default",
    workers: Annotated[Optional[int], typer.Option(help="uvicorn workers. Default: the profile's.")] = None,
    keepalive: Annotated[bool, typer.Option(help="HTTP keep-alive (ab -k; Locust then keeps its connections).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Run folder. Default: runs/UTC-STAMP-agreement-PROFILE.")] = None,
) -> None:
    from app.prepare import locate, prepare
    from loadtests.agreement import Engine, measure_engines

    if scenario not in SCENARIOS_BY_ID:
        raise fail(f"unknown scenario {scenario}; see --list")
    if profile_name not in PROFILES or PROFILES[profile_name].fixed_requests:
        raise fail(f"agreement needs a profile with steady windows, got {profile_name!r}")
    if rounds < 1 or not 0 <= generators <= 64 or not 0 <= processes <= 64 or (generators < 2 and processes < 1):
        raise fail("agreement needs --rounds >= 1 and a second engine: --generators 2..64 or --processes 1..64")
    if not 0 < margin < 1 or (window is not None and not 0 < window <= 60) or (workers is not None and not 1 <= workers <= 16):
        raise fail("agreement needs 0 < --margin < 1, 0 < --window <= 60 and 1 <= --workers <= 16")
    if out is not None and (out / RESULTS).exists():
        raise fail(f"--out {out} already holds a run; choose a new folder (runs are never mixed)")
    preset = PROFILES[profile_name]
    profile = dataclasses.replace(preset, concurrency=concurrency or preset.concurrency, workers=workers or preset.workers,
                                  measure_seconds=window or preset.measure_seconds, repeat=rounds, max_repeat=rounds)
    if profile.concurrency < max(generators, processes, 1):
        raise fail(f"{max(generators, processes)} load generators need at least as many clients, got -c {profile.concurrency}")
    try:
        ab_path = find_ab()
        if processes:
            _find_locust()
    except HarnessError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    case = cases_for(SCENARIOS_BY_ID[scenario], profile.seconds)[0]
    settings = server_settings(Settings(), profile)
    database = locate(settings)
    folder = RunFolder(out or default_run_dir(f"agreement-{profile.name}"))
    exit_code, status, error, figures = 0, "complete", None, []
    try:
        settings = settings.model_copy(update={"database_url": database.url})
        prepare(database.url, settings)
        folder.write_run(command=sys.argv, profile=profile.to_dict(), status="running",
                         environment=environment(ab_path, database.source), started=datetime.now(UTC).isoformat(timespec="seconds"),
                         load={"engines": ["ab", *([f"ab x{generators}"] if generators >= 2 else []),
                                           *([f"locust x{processes}"] if processes else [])]})
        with ExitStack() as stack:
            engines = [Engine("ab")]
            if generators >= 2:
                engines.append(Engine(f"ab x{generators}", generators=generators))
            if processes:
                engines.append(Engine(f"locust x{processes}", swarm=stack.enter_context(_swarm(processes, 0, "127.0.0.1", 0, folder.path))))
            harness = Harness(profile, [], [], folder, console, settings=settings, keepalive=keepalive, count_work=False)
            figures = measure_engines(harness, Job(case, profile.concurrency), engines, rounds)
    except HarnessError as exc:
        exit_code, status, error = exc.exit_code, "failed", str(exc)
    except KeyboardInterrupt:
        exit_code, status, error = EXIT_SIGINT, "interrupted", "interrupted by the user (Ctrl-C)"
    finally:
        database.close()
        folder.write_run(status=status, error=error, finished=datetime.now(UTC).isoformat(timespec="seconds"),
                         agreement={"case": case.key, "concurrency": profile.concurrency, "margin": margin, "rounds": rounds,
                                    "engines": [f.to_dict(margin) for f in figures]})
    if error:
        console.print(f"[bold red]{status}:[/bold red] {escape(error)}", highlight=False)
    table = Table("engine", "rps per round", "median rps", "/ one ab [median of rounds]", "CPU per generator, cores",
                  "generators' CPU ms / req", "service, cores", "bound", title=f"{case.key} at c = {profile.concurrency}")
    for found in figures:
        agrees = found.agrees(margin)
        verdict = "" if found.label == "ab" else (" [green]agrees[/green]" if agrees else " [yellow]differs[/yellow]"
                                                  if agrees is False else " -")
        table.add_row(escape(found.label), ", ".join(_rate(r) for r in found.rates), _rate(found.rps),
                      ("1" if found.label == "ab" else _fmt(found.ratio)) + verdict,
                      " · ".join(_fmt(c) for c in found.generator_cpu), _fmt(found.client_ms), _fmt(found.service_cores),
                      escape(found.bound or "-"))
    Console(width=max(console.width, 160)).print(table)
    console.print(f"samples: {folder.path / RESULTS}; table: {folder.path / 'run.json'} (agreement)", highlight=False)
    raise typer.Exit(exit_code)


@cli.command("readme", help="Rewrite the measured sections of README.md and the documentation pages (docs/*.md; each between "
             "<!-- NAME:start --> and <!-- NAME:end -->, loadtests/readme.py's PLACES lists them) from the run folders "
             "committed under results/ (results/default, results/stability/*, results/production). Every number in those "
             "sections comes from them; tests/test_readme_results.py keeps them equal.")
def readme_command(
    root: Annotated[Path, typer.Option(help="The project root: README.md, docs/ and results/ are under it.")] = Path("."),
) -> None:
    from loadtests.readme import PLACES, rewrite

    missing = sorted({place.as_posix() for place, _ in PLACES if not (root / place).is_file()})
    if missing:
        raise fail(f"no {', '.join(missing)} under {root}")
    try:
        changed = rewrite(root)
    except ValueError as error:  # a file lost a section's markers
        raise fail(str(error)) from None
    console.print(", ".join(changed) + " rewritten" if changed else "README.md and docs/ already equal to results/")


def _link_latest(path: Path) -> None:
    """runs/latest -> the newest run, for people and for --compare."""
    latest = path.parent / "latest"
    try:
        if latest.is_symlink():
            latest.unlink()
        if not latest.exists():
            os.symlink(path.name, latest)
    except OSError:
        pass


def main() -> None:
    cli()
