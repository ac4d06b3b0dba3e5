"""The one exception the service turns into 503: the database cannot serve this request now."""

from __future__ import annotations

from typing import Literal

Reason = Literal["database_unavailable", "pool_timeout", "statement_timeout", "prepared_statement"]


class DatabaseUnavailable(Exception):
    """A driver could not reach Postgres, waited too long for a pooled connection, hit the statement
    timeout, or lost a server-side prepared statement (``prepared_statement``: behind PgBouncer)."""

    def __init__(self, driver: str, reason: Reason, detail: str) -> None:
        super().__init__(f"{driver}: {reason}: {detail}")
        self.driver = driver
        self.reason = reason
        self.detail = detail
