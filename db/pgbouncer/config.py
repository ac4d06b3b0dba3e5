"""The pgbouncer.ini and auth file iobench generates, from a database URL and a few numbers.

One database entry, named like the database, pointing at the server of the URL; clients reach
it on 127.0.0.1 only, with ``auth_type = trust`` (PgBouncer still wants the user listed in the
auth file). The keys are those of PgBouncer 1.18 (Debian 12's); `config.md` of that version
documents each. PgBouncer 1.18 refuses a key it does not know (``max_prepared_statements``, from
1.21, makes it exit with "cannot load config file").
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from typing import Literal

from psycopg.conninfo import conninfo_to_dict

PoolMode = Literal["session", "transaction", "statement"]

#: Startup parameters iobench's drivers send that PgBouncer 1.18 does not track and would refuse
#: ("unsupported startup parameter"): libpq's ``options`` (psycopg2, psycopg 3 and SQLAlchemy on
#: psycopg2 send ``-c statement_timeout=...``) and asyncpg's ``server_settings`` key. PgBouncer
#: drops them; the same bound is set on every server connection instead (``connect_query``).
IGNORED_STARTUP_PARAMETERS = ("options", "statement_timeout")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Upstream:
    """Where PgBouncer connects: the server, database and login of a libpq URL."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None
    sslmode: str | None

    @classmethod
    def from_url(cls, database_url: str) -> Upstream:
        """The parts of ``database_url`` (a ``postgresql://`` URL; a SQLAlchemy ``+driver`` is fine)."""
        scheme, sep, rest = database_url.partition("://")
        # Parsed from a URL, every value is a string (psycopg's type also allows the ints of keywords).
        params = {key: str(value) for key, value in conninfo_to_dict(f"{scheme.split('+')[0]}{sep}{rest}").items() if value is not None}
        host = params.get("host") or params.get("hostaddr")
        if not host or "," in host:
            raise ValueError("PgBouncer needs a database URL with one host (a name, an address or a socket folder)")
        user = params.get("user") or getpass.getuser()  # libpq's defaults for a URL without them
        return cls(
            host=host,
            port=int(params.get("port") or 5432),
            dbname=params.get("dbname") or user,
            user=user,
            password=params.get("password"),
            sslmode=params.get("sslmode"),
        )


def _quote(value: str) -> str:
    """A value of a PgBouncer connection string: single-quoted, a quote doubled (its loader.c)."""
    if "\n" in value or "\r" in value:
        raise ValueError("a PgBouncer setting cannot hold a line break")
    return "'" + value.replace("'", "''") + "'"


def _auth_quote(value: str) -> str:
    """A field of the auth file: double-quoted, a double quote doubled."""
    if "\n" in value or "\r" in value:
        raise ValueError("a PgBouncer auth file field cannot hold a line break")
    return '"' + value.replace('"', '""') + '"'


@dataclass(frozen=True)
class PgBouncerConfig:
    """Everything the generated pgbouncer.ini says.

    ``pool_size`` is ``default_pool_size``: server connections per user and database, here the
    most PgBouncer opens to Postgres. ``max_client_conn`` bounds the clients (the service's pools),
    ``statement_timeout_ms`` is set on every server connection it opens.

    ``query_wait_timeout`` (s) bounds how long a client's query waits for a server connection
    before PgBouncer drops the client with "query_wait_timeout" (PgBouncer's default, 120 s, is
    how long a request would hang on a database that went away); ``connect_timeout`` (s) bounds
    its connection attempts to Postgres (``server_connect_timeout``, default 15).
    """

    upstream: Upstream
    port: int
    auth_file: str
    pool_mode: PoolMode = "transaction"
    pool_size: int = 20
    max_client_conn: int = 1000
    statement_timeout_ms: int | None = None
    server_round_robin: bool = False
    query_wait_timeout: float = 10.0
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")
        if self.max_client_conn < 1:
            raise ValueError(f"max_client_conn must be >= 1, got {self.max_client_conn}")
        if self.statement_timeout_ms is not None and self.statement_timeout_ms < 0:
            raise ValueError(f"statement_timeout_ms must be >= 0, got {self.statement_timeout_ms}")
        if not self.query_wait_timeout > 0 or not self.connect_timeout > 0:
            raise ValueError("query_wait_timeout and connect_timeout must be > 0 s")

    @property
    def database(self) -> str:
        """The database name clients use: the upstream's own, so a URL only changes host and port."""
        # An ini key, which PgBouncer does not unquote: keep to names that need no quoting.
        if not _PLAIN_NAME.fullmatch(self.upstream.dbname):
            raise ValueError(f"PgBouncer: database name {self.upstream.dbname!r} is not a plain name ({_PLAIN_NAME.pattern})")
        return self.upstream.dbname

    def database_line(self) -> str:
        upstream = self.upstream
        parts = {"host": upstream.host, "port": str(upstream.port), "dbname": upstream.dbname, "user": upstream.user}
        if upstream.password is not None:
            parts["password"] = upstream.password
        if self.statement_timeout_ms is not None:
            parts["connect_query"] = f"SET statement_timeout = {self.statement_timeout_ms}"
        return f"{self.database} = " + " ".join(f"{key}={_quote(value)}" for key, value in parts.items())

    def ini(self) -> str:
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            # No Unix socket: nothing to clean up, no clash in /tmp between two PgBouncers.
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": self.auth_file,
            "pool_mode": self.pool_mode,
            "default_pool_size": str(self.pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": str(self.max_client_conn),
            "ignore_startup_parameters": ",".join(IGNORED_STARTUP_PARAMETERS),
            # SHOW POOLS / SHOW STATS on the admin console (database "pgbouncer"), read-only.
            "stats_users": self.upstream.user,
            "server_round_robin": "1" if self.server_round_robin else "0",
            "query_wait_timeout": f"{self.query_wait_timeout:g}",
            "server_connect_timeout": f"{self.connect_timeout:g}",
            # After a failed login PgBouncer refuses new clients ("server login has been failing")
            # for this long: 1 s, not 15, so a database that is back, or was just created, serves at once.
            "server_login_retry": "1",
            # Its log goes to stderr (no logfile, no pidfile: it runs in the foreground).
            "log_connections": "0",
            "log_disconnections": "0",
        }
        if self.upstream.sslmode is not None:
            settings["server_tls_sslmode"] = self.upstream.sslmode
        lines = ["[databases]", self.database_line(), "", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"

    def auth_file_text(self) -> str:
        """One line for the one user; with ``trust`` PgBouncer checks only that it is listed."""
        return f"{_auth_quote(self.upstream.user)} {_auth_quote(self.upstream.password or '')}\n"
