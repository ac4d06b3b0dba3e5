"""PgBouncer in front of the database: a managed process (``process.py``), its generated config
(``config.py``), and which drivers work through it in transaction pooling (``compatibility.py``)."""

from db.pgbouncer.process import (
    INSTALL_HINT,
    PgBouncerError,
    PgBouncerMissingError,
    PgBouncerProcess,
    find_pgbouncer,
    pgbouncer_version,
)

__all__ = [
    "INSTALL_HINT",
    "PgBouncerError",
    "PgBouncerMissingError",
    "PgBouncerProcess",
    "find_pgbouncer",
    "pgbouncer_version",
]
