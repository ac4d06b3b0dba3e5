"""A driver module for tests/test_catalogue.py: asyncpg under another name, so the test adds a
working pooled driver with nothing but this module and one catalogue entry."""

from __future__ import annotations

from db.drivers.asyncpg import AsyncpgDatabase


class FakeDatabase(AsyncpgDatabase):
    """Everything asyncpg does; only its catalogue entry (name, routes, pool) is new."""
