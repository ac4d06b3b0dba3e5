"""``iobench``: prepare the database and serve the app (``python -m app --help``)."""

from __future__ import annotations

import logging
import os
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated, Optional

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
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


@cli.command()
def prepare(seed_rows: SeedRows = None, data_dir: Annotated[Optional[Path], typer.Option()] = None) -> None:
    """Create, migrate and seed the database, and write the data files; then exit."""
    from db.bootstrap import locate
    from db.bootstrap import prepare as prepare_database

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
    host: Host = None,
    port: Port = None,
    workers: Workers = None,
    threadpool_tokens: Tokens = None,
    seed_rows: SeedRows = None,
    skip_prepare: Annotated[bool, typer.Option(help="Don't migrate or seed (the database is ready).")] = False,
) -> None:
    """Start the service with its database ready (migrate and seed if needed)."""
    from db.bootstrap import locate
    from db.bootstrap import prepare as prepare_database

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    settings = _settings(host=host, port=port, workers=workers, threadpool_tokens=threadpool_tokens, seed_rows=seed_rows)
    database = locate(settings)
    try:
        typer.echo(f"database: {database.describe()}")
        settings = settings.model_copy(update={"database_url": database.url})
        if not skip_prepare:
            prepare_database(database.url, settings)
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
        database.close()


@cli.command()
def scenarios() -> None:
    """Print the scenario catalogue as a Markdown table."""
    from app.catalogue import markdown_table

    typer.echo(markdown_table())


def main() -> None:
    cli()
