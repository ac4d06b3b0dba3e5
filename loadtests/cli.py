"""iobench-load (python -m loadtests): measure the catalogue with ab and write a report."""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Optional

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.catalogue import DRIVERS, SCENARIOS_BY_ID, WORKLOADS, Style
from app.settings import Settings
from loadtests.ab import AbMissingError, find_ab, normalise_target
from loadtests.environment import environment
from loadtests.findings import FINDINGS, evaluate_all, required_failures
from loadtests.profiles import PROFILES, cases_for, narrow
from loadtests.results import RESULTS, RunFolder, default_run_dir, read_run
from loadtests.runner import Harness, Job, ServiceDied, finding_jobs, server_settings
from loadtests.server import ServerError

EXIT_FINDING_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

console = Console()
cli = typer.Typer(add_completion=False, rich_markup_mode="rich")


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


def _list(jobs: list[Job]) -> None:
    table = Table("case", "style", "driver", "c", "why", title=f"{len(jobs)} measurements")
    for job in jobs:
        why = "sweep" if job.sweep else f"for {job.for_finding}" if job.for_finding else ""
        table.add_row(escape(job.case.key), str(job.case.scenario.style), job.case.scenario.driver.name, str(job.concurrency), why)
    console.print(table)


def _print_verdicts(folder: Path) -> int:
    _, records = read_run(folder)
    verdicts = evaluate_all(records)
    table = Table("finding", "verdict", "ratio", "claim", title="Findings")
    colours = {"pass": "green", "fail": "red", "inconclusive": "yellow", "not measured": "dim"}
    for verdict in verdicts:
        if verdict.status == "not measured":
            continue
        ratio = f"{verdict.ratio:.2f}" if verdict.ratio is not None else "-"
        required = "" if verdict.finding.required else " (not required)"
        table.add_row(verdict.finding.id, f"[{colours[verdict.status]}]{verdict.status}[/]{required}", ratio, verdict.finding.claim)
    console.print(table)
    return EXIT_FINDING_FAILED if required_failures(verdicts) else 0


@cli.command(help=__doc__ + """

Starts the service itself (uvicorn, with the profile's threadpool and pool sizes) on a
database it prepares (DATABASE_URL, else Postgres on localhost:5432, else an embedded one),
or measures a running one with `--target`. Writes `runs/STAMP-PROFILE/`: results.jsonl
(appended as each case finishes), run.json, report.md and PNG plots.

Exit status: 0 when every required finding holds, 1 when one fails or cannot be judged,
2 for bad input or a run that could not go on (the report keeps what was measured),
130 when interrupted (the partial report is written).
""")
def main_command(
    profile_name: Annotated[
        str,
        typer.Option(
            "--profile", "-p",
            help="quick (< 1 min, a few key cases), default (the whole catalogue, a few minutes) "
            "or article (3 s waits, -n 200 -c 100: about 45 minutes).",
        ),
    ] = "default",
    target: Annotated[
        Optional[str],
        typer.Option(
            envvar="IOBENCH_TARGET",
            help="URL of a running service to measure (127.0.0.1/localhost only) instead of starting one.",
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
        typer.Option(
            help="Only scenarios using this driver (repeatable): " + ", ".join(d.name for d in DRIVERS) + ".",
        ),
    ] = None,
    scenario: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Only this scenario id (repeatable), e.g. pg_sleep/async/asyncpg. See --list.",
        ),
    ] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", help="Concurrent ab clients (ab -c). Default: the profile's.")] = None,
    requests: Annotated[
        Optional[int],
        typer.Option(
            "--requests", "-n",
            help="Requests per measurement (ab -n). Default: sized from the warm-up's rate to last the profile's measure time.",
        ),
    ] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", "-S", help="S, each of the two waits of wait/pg_sleep routes, in seconds.")] = None,
    keepalive: Annotated[bool, typer.Option(help="HTTP keep-alive (ab -k). Off by default, as in the article.")] = False,
    sweep: Annotated[
        bool,
        typer.Option(
            help="Also sweep concurrency for the profile's sweep scenarios (or the --scenario ones) and plot throughput and p99 against c.",
        ),
    ] = False,
    sweep_levels: Annotated[Optional[str], typer.Option(help="Comma-separated concurrency levels for --sweep. Default: the profile's.")] = None,
    threadpool_tokens: Annotated[Optional[int], typer.Option(help="AnyIO threadpool size of the started service. Default: the profile's.")] = None,
    pool_max: Annotated[
        Optional[int],
        typer.Option(
            help="Connection pool size of every driver of the started service. Default: the profile's.",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes of the started service.")] = 1,
    compare: Annotated[
        Optional[Path],
        typer.Option(
            help="An earlier run folder: the report marks throughput regressions and findings that changed.",
        ),
    ] = None,
    list_only: Annotated[bool, typer.Option("--list", help="Print the measurements this command would make, and exit.")] = False,
) -> None:
    if profile_name not in PROFILES:
        raise fail(f"unknown profile {profile_name!r}; choose from {', '.join(PROFILES)}")
    for name, value in (("--concurrency", concurrency), ("--requests", requests), ("--threadpool-tokens", threadpool_tokens),
                        ("--pool-max", pool_max), ("--workers", workers)):
        if value is not None and value < 1:
            raise fail(f"{name} must be >= 1, got {value}")
    if seconds is not None and not 0 <= seconds <= 60:
        raise fail(f"--seconds must be between 0 and 60, got {seconds}")
    if compare is not None and not compare.exists():
        raise fail(f"--compare: no run folder at {compare}")
    if out is not None and (out / RESULTS).exists():
        raise fail(f"--out {out} already holds a run; choose a new folder (runs are never mixed)")
    profile = dataclasses.replace(
        PROFILES[profile_name],
        **{key: value for key, value in (("seconds", seconds), ("concurrency", concurrency),
                                         ("threadpool_tokens", threadpool_tokens), ("pool_max", pool_max)) if value is not None},
    )
    if profile.concurrency > (requests or profile.max_requests):
        raise fail(f"--requests ({requests}) must be at least --concurrency ({profile.concurrency}): ab needs n >= c")
    levels = _levels(sweep_levels) or profile.sweep_levels

    workloads = _check_names("workload", workload, {w.name for w in WORKLOADS})
    styles = _check_names("style", style, {str(s) for s in Style})
    drivers = _check_names("driver", driver, {d.name for d in DRIVERS})
    chosen = _check_names("scenario", scenario, set(SCENARIOS_BY_ID))
    base = [SCENARIOS_BY_ID[s] for s in SCENARIOS_BY_ID if s in chosen] if chosen else profile.scenarios()
    selected = narrow(base, workloads, styles, drivers)
    if not selected:
        raise fail("no scenario matches these filters; see --list")
    jobs = [Job(case, profile.concurrency) for case in profile.cases(selected)]
    jobs += finding_jobs(jobs)
    if sweep:
        sweep_ids = set(chosen or profile.sweep_ids)
        for swept in (s for s in selected if s.id in sweep_ids):
            jobs += [Job(case, level, sweep=True) for case in cases_for(swept, profile.seconds) for level in levels]
    if list_only:
        _list(jobs)
        raise typer.Exit(0)

    try:
        ab_path = find_ab()
    except AbMissingError as exc:
        raise fail(str(exc)) from None
    target_url = _check_target(target) if target else None
    folder = RunFolder(out or default_run_dir(profile.name))
    console.print(f"iobench: profile [bold]{profile.name}[/bold], {len(jobs)} measurements -> {folder.path}")
    exit_code, status, error, database = 0, "complete", None, None
    try:
        settings = server_settings(Settings(workers=workers), profile)
        if target_url:
            source = f"target {target_url}"
        else:
            from db.bootstrap import locate, prepare

            database = locate(settings)
            console.print(f"database: {database.describe()}; preparing (migrate, seed {settings.seed_rows} rows) ...")
            prepare(database.url, settings)
            settings = settings.model_copy(update={"database_url": database.url})
            source = database.source
        folder.write_run(
            profile=profile.to_dict(), command=sys.argv, status="running", planned=len(jobs),
            started=datetime.now(UTC).isoformat(timespec="seconds"), environment=environment(ab_path, source),
            findings=[f.id for f in FINDINGS], error=None,
        )
        Harness(profile, jobs, folder, console, settings=settings, target=target_url, keepalive=keepalive,
                requests=requests).run()
    except KeyboardInterrupt:
        exit_code, status, error = EXIT_INTERRUPTED, "interrupted", "interrupted by the user (Ctrl-C)"
    except (ServiceDied, ServerError) as exc:
        exit_code, status, error = EXIT_USAGE, "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a database that cannot be prepared: keep what was measured
        exit_code, status, error = EXIT_USAGE, "failed", f"{type(exc).__name__}: {exc}"
    finally:
        folder.write_run(status=status, error=error, finished=datetime.now(UTC).isoformat(timespec="seconds"))
        if database is not None:
            database.close()
    if error:
        console.print(f"[bold red]{status}:[/bold red] {escape(error)}", highlight=False)  # a log tail is no markup
    from loadtests.report import write_report

    report = write_report(folder.path, compare_with=compare)
    _link_latest(folder.path)
    verdict_code = _print_verdicts(folder.path)
    console.print(f"report: {report}")
    raise typer.Exit(exit_code or verdict_code)


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
