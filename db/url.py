"""Database URLs: which server iobench uses and how each driver spells it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from app.settings import Settings

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/iobench"


def database_url(settings: Settings) -> str:
    """The libpq URL of the iobench database (``DATABASE_URL``, else localhost:5432/iobench)."""
    return settings.database_url or DEFAULT_URL


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
