"""``iobench``: prepare the database and serve the app (``python -m app --help``)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import uvicorn

from app.settings import Settings

cli = typer.Typer(
    help="iobench service: FastAPI routes in the article's four styles over real Postgres and file drivers.",
    no_args_is_help=True,
    add_completion=False,
)

Port = Annotated[Optional[int], typer.Option(help="TCP port (default 8000, or IOBENCH_PORT).")]
Host = Annotated[Optional[str], typer.Option(help="Bind address (default 127.0.0.1: nothing outside this machine).")]
Workers = Annotated[Optional[int], typer.Option(help="uvicorn worker processes (default 1).")]
Tokens = Annotated[Optional[int], typer.Option(help="AnyIO threadpool size for `def` routes (default 40).")]
SeedRows = Annotated[Optional[int], typer.Option(help="Rows in the items table (default 100000).")]
# A string, parsed by db.wire_proxy.parse_rtt_ms, so that bad input gets our one-line error.
DbRtt = Annotated[Optional[str], typer.Option(
    "--db-rtt", metavar="MS",
    help="Put the database MS milliseconds of round trip away (0-100), through a delay proxy on 127.0.0.1.",
)]


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"iobench {installed_version('iobench')}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Options of `iobench` itself, before any command."""


def _settings(**overrides: object) -> Settings:
    """Environment settings with the options given on the command line on top."""
    # Any: Settings validates each value against its field, as it does the environment's.
    given: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)


@cli.command()
def prepare(seed_rows: SeedRows = None, data_dir: Annotated[Optional[Path], typer.Option()] = None) -> None:
    """Create, migrate and seed the database, and write the data files; then exit."""
    from app.prepare import locate
    from app.prepare import prepare as prepare_database

    settings = _settings(seed_rows=seed_rows, data_dir=data_dir)
    database = locate(settings)
    try:
        typer.echo(f"database: {database.describe()}")
        prepare_database(database.url, settings)
        typer.echo(f"ready: {settings.seed_rows} items, data files in {settings.data_dir}")
    finally:
        database.close()


@cli.command()
def serve(
    like: Annotated[Optional[str], typer.Option(
        "--like", metavar="PROFILE",
        help="Shape the service like a load-test profile (quick, default, workers, production, article): its threadpool, "
        "pool sizes, workers and database distance, so `iobench-load --target ... --profile PROFILE` measures the "
        "architecture its findings are about. Options given as well win.",
    )] = None,
    host: Host = None,
    port: Port = None,
    workers: Workers = None,
    threadpool_tokens: Tokens = None,
    seed_rows: SeedRows = None,
    skip_prepare: Annotated[bool, typer.Option(help="Don't migrate or seed (the database is ready).")] = False,
    db_rtt: DbRtt = None,
) -> None:
    """Start the service with its database ready (migrate and seed if needed)."""
    from app.prepare import locate
    from app.prepare import prepare as prepare_database
    from db.wire_proxy import ProxyProcess, parse_rtt_ms
    from db.wire_proxy.probe import added_rtt_ms

    try:
        rtt_ms = None if db_rtt is None else parse_rtt_ms(db_rtt)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    shape = _profile_shape(like) if like is not None else {}
    if rtt_ms is None and shape.get("db_rtt_ms"):
        rtt_ms = float(shape["db_rtt_ms"])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    settings = _settings(**{**shape, "host": host, "port": port, "workers": workers or shape.get("workers"),
                            "threadpool_tokens": threadpool_tokens or shape.get("threadpool_tokens"), "seed_rows": seed_rows})
    if rtt_ms is None and settings.db_rtt_ms:
        rtt_ms = settings.db_rtt_ms
    if like is not None:
        typer.echo(f"shaped like the {like} profile: {settings.threadpool_tokens} threadpool tokens, pools of "
                   f"{settings.pool_max}, {settings.workers} worker(s), database {rtt_ms or 0:g} ms away")
    own_log: Path | None = None
    database = locate(settings)
    proxy: ProxyProcess | None = None
    try:
        typer.echo(f"database: {database.describe()}")
        settings = settings.model_copy(update={"database_url": database.url})
        if not skip_prepare:
            prepare_database(database.url, settings)  # straight to the database: the delay is for the service
        if rtt_ms is not None:
            proxy = ProxyProcess(database.url, rtt_ms).start()
            measured = added_rtt_ms(database.url, proxy.url)
            typer.echo(f"{proxy.describe()}; measured: +{measured:.2f} ms per round trip")
            settings = settings.model_copy(update={"database_url": proxy.url, "db_rtt_ms": rtt_ms})
        if settings.completions_dir is None:
            # A completion log unless one is configured: a load test on this machine then counts steady windows
            # from it (app/completions.py) rather than from ab's whole seconds. In memory; it goes with the service.
            shared_memory = Path("/dev/shm")
            own_log = Path(tempfile.mkdtemp(prefix="iobench-completions-",
                                            dir=shared_memory if shared_memory.is_dir() else None))
            settings = settings.model_copy(update={"completions_dir": own_log})
        # Workers are fresh processes that build the app from the environment.
        os.environ.update(settings.to_env())
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop=settings.loop,
            log_level="warning",
        )
    finally:
        if proxy is not None:
            proxy.stop()
        database.close()
        if own_log is not None:
            shutil.rmtree(own_log, ignore_errors=True)


def _profile_shape(name: str) -> dict[str, Any]:
    """The server settings of load-test profile ``name`` (exit 2 for an unknown one)."""
    from loadtests.profiles import PROFILES  # the harness's profiles are the one source of their shapes

    if name not in PROFILES:
        typer.echo(f"error: unknown profile {name!r} for --like; choose from {', '.join(PROFILES)}", err=True)
        raise typer.Exit(2)
    profile = PROFILES[name]
    return {"threadpool_tokens": profile.threadpool_tokens, "pool_max": profile.pool_max, "workers": profile.workers,
            "acquire_timeout": profile.acquire_timeout, "max_wait_seconds": max(10.0, profile.seconds),
            "db_rtt_ms": profile.db_rtt_ms}


@cli.command()
def scenarios() -> None:
    """Print the scenario catalogue as a Markdown table."""
    from app.catalogue import markdown_table

    typer.echo(markdown_table())


def main() -> None:
    cli()
