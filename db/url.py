"""Database URLs: which server iobench uses and how each driver spells it."""

from __future__ import annotations

from sqlalchemy.engine import make_url

#: The shared Postgres most machines run, as user ``postgres``; tried when DATABASE_URL is unset.
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The database iobench creates and owns on whatever server it is given.
DEFAULT_DATABASE_NAME = "iobench"
#: The iobench database on the local server: what DATABASE_URL means when it is unset.
DEFAULT_URL = f"{LOCAL_SERVER_URL.rsplit('/', 1)[0]}/{DEFAULT_DATABASE_NAME}"


def with_driver(url: str, drivername: str) -> str:
    """``url`` rewritten for a SQLAlchemy dialect, e.g. ``postgresql+asyncpg``."""
    return make_url(url).set(drivername=drivername).render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """``url`` without any SQLAlchemy ``+driver`` suffix, as libpq and asyncpg expect it."""
    return with_driver(url, "postgresql")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at another database on the same server."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def masked(url: str) -> str:
    """``url`` with its password hidden, for /config and reports."""
    return make_url(url).render_as_string(hide_password=True)
