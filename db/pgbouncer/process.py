"""``PgBouncerProcess``: PgBouncer in front of a database, started, read and stopped from Python.

    with PgBouncerProcess(database_url, pool_size=20, log_path=run / "pgbouncer.log") as bouncer:
        service_settings.database_url = bouncer.url   # the same database, through PgBouncer
        ...                                           # the load
        pools = bouncer.show("POOLS")                 # clients and server connections, per pool
        cpu = bouncer.cpu_seconds()                   # PgBouncer's own CPU (user + system) so far

It runs Debian's ``pgbouncer`` (``apt-get install -y pgbouncer``; 1.18.0 on Debian 12) with a
config generated into a temporary folder (see ``config.py``): transaction pooling, 127.0.0.1 on
a free port, no Unix socket, trust auth. Under root it runs as ``nobody`` (PgBouncer refuses
uid 0; ``-u`` switches user before that check). A supervisor (``python -m db.pgbouncer``) stops
it when the process that started it is gone, however that process ended.
"""

from __future__ import annotations

import os
import pwd
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel
from sqlalchemy.engine import make_url

from db.pgbouncer.config import PgBouncerConfig, PoolMode, Upstream

INSTALL_HINT = (
    "PgBouncer not found. Install it: Debian/Ubuntu `sudo apt-get install -y pgbouncer`, "
    "Fedora `dnf install pgbouncer`, macOS `brew install pgbouncer`; "
    "or name the executable in IOBENCH_PGBOUNCER."
)
#: The user PgBouncer runs as when started by root.
ROOT_RUNS_AS = "nobody"
#: How many times a free port is tried when another process takes it first.
PORT_ATTEMPTS = 3


class PgBouncerError(RuntimeError):
    """PgBouncer did not start, died, or does not answer (the message carries the tail of its log)."""


class PgBouncerMissingError(PgBouncerError):
    """The ``pgbouncer`` executable could not be found; the message is the install hint."""

    def __init__(self, message: str = INSTALL_HINT) -> None:
        super().__init__(message)


def find_pgbouncer() -> str:
    """The path of ``pgbouncer``: ``IOBENCH_PGBOUNCER`` (a path or a command name), else ``PATH``
    and the sbin folders Debian installs it in (not on a normal user's ``PATH``)."""
    override = os.environ.get("IOBENCH_PGBOUNCER")
    if override:
        found = shutil.which(override)
        if found is None:
            raise PgBouncerMissingError(f"IOBENCH_PGBOUNCER={override!r} is not an executable. {INSTALL_HINT}")
        return found
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    found = shutil.which("pgbouncer", path=search)
    if found is None:
        raise PgBouncerMissingError()
    return found


def pgbouncer_version(binary: str | None = None) -> str:
    """``pgbouncer --version``'s first line, e.g. ``PgBouncer 1.18.0``."""
    done = subprocess.run([binary or find_pgbouncer(), "--version"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout.strip().splitlines() or ["PgBouncer (unknown version)"])[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path | None, lines: int = 20) -> str:
    if path is None:
        return "(no log)"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


class ReadyLine(BaseModel):
    """What the supervisor prints once PgBouncer is started."""

    pid: int


class PgBouncerProcess:
    """PgBouncer in ``pool_mode`` in front of the database of ``database_url``.

    ``pool_size`` server connections at most (``default_pool_size``); ``max_client_conn``
    clients; ``statement_timeout_ms`` set on each server connection (the drivers' own, sent at
    startup, is a parameter PgBouncer 1.18 cannot pass on). ``log_path`` receives its log
    (default: a file in its temporary folder, removed at stop). ``server_round_robin`` hands
    server connections out in turn rather than last-used first, so consecutive transactions of
    one client land on different server connections. ``query_wait_timeout`` and
    ``connect_timeout`` (s): see ``PgBouncerConfig``.
    """

    def __init__(self, database_url: str, *, pool_size: int = 20, max_client_conn: int = 1000,
                 pool_mode: PoolMode = "transaction", statement_timeout_ms: int | None = None,
                 server_round_robin: bool = False, query_wait_timeout: float = 10.0, connect_timeout: float = 5.0,
                 port: int = 0, log_path: Path | None = None, ready_timeout: float = 10.0) -> None:
        self.database_url = database_url
        self.upstream = Upstream.from_url(database_url)
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.pool_mode: PoolMode = pool_mode
        self.statement_timeout_ms = statement_timeout_ms
        self.server_round_robin = server_round_robin
        self.query_wait_timeout = query_wait_timeout
        self.connect_timeout = connect_timeout
        self.requested_port = port
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.config: PgBouncerConfig | None = None
        self.binary: str | None = None
        self._folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._config(port or 1)  # fail on bad settings now, before anything starts

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        self.binary = find_pgbouncer()
        self._folder = Path(tempfile.mkdtemp(prefix="iobench-pgbouncer-"))
        if self.log_path is None:
            self.log_path = self._folder / "pgbouncer.log"
        try:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                port = self.requested_port or free_port()
                try:
                    self._start_on(port)
                    break
                except PgBouncerError:
                    # The port went to someone else between free_port() and PgBouncer's bind.
                    retry = not self.requested_port and attempt < PORT_ATTEMPTS and "Address already in use" in tail(self.log_path)
                    if not retry:
                        raise
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self, port: int) -> PgBouncerConfig:
        folder = self._folder or Path(tempfile.gettempdir())
        return PgBouncerConfig(
            upstream=self.upstream, port=port, auth_file=str(folder / "userlist.txt"), pool_mode=self.pool_mode,
            pool_size=self.pool_size, max_client_conn=self.max_client_conn,
            statement_timeout_ms=self.statement_timeout_ms, server_round_robin=self.server_round_robin,
            query_wait_timeout=self.query_wait_timeout, connect_timeout=self.connect_timeout,
        )

    def _start_on(self, port: int) -> None:
        assert self._folder is not None and self.binary is not None and self.log_path is not None
        self._stop_process()
        self.config = self._config(port)
        ini = self._folder / "pgbouncer.ini"
        ini.write_text(self.config.ini())
        (self._folder / "userlist.txt").write_text(self.config.auth_file_text())
        command = [self.binary, str(ini)]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; -u switches user first. That user reads the config.
            user = pwd.getpwnam(ROOT_RUNS_AS)
            for path in (self._folder, ini, self._folder / "userlist.txt"):
                os.chown(path, user.pw_uid, user.pw_gid)
            command = [self.binary, "-u", ROOT_RUNS_AS, str(ini)]
        for path in (ini, self._folder / "userlist.txt"):
            path.chmod(0o600)  # the upstream password may be in both
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps its own copy)
        log_offset = log.tell()  # a log the caller gave may hold earlier runs
        try:
            # Its own session: a Ctrl-C meant for the harness does not cut the service's database
            # from under it, and stop() signals PgBouncer and its supervisor together.
            self._process = subprocess.Popen(
                [sys.executable, "-m", "db.pgbouncer", "--parent-pid", str(os.getpid()), "--orphan-cleanup", str(self._folder),
                 "--", *command],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            )
        finally:
            log.close()
        self._pid = ReadyLine.model_validate_json(self._read_ready_line()).pid
        self._wait_listening(port, log_offset)

    def _read_ready_line(self) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        deadline = time.monotonic() + self.ready_timeout
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise PgBouncerError(f"PgBouncer's supervisor said nothing for {self.ready_timeout:g} s; {self._log_hint()}")
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    code = self._process.wait()
                    raise PgBouncerError(f"PgBouncer's supervisor exited with code {code}; {self._log_hint()}")
                line += chunk
        stdout.close()  # it prints nothing more there
        return line

    def _wait_listening(self, port: int, log_offset: int) -> None:
        """Until PgBouncer logs that it listens on ``port`` (it does once its config is loaded).

        Its log, not a test connection: a connection could reach whoever else holds the port,
        while PgBouncer logs "cannot listen on ...: Address already in use" and exits.
        """
        assert self._process is not None and self.log_path is not None
        expected = f"listening on 127.0.0.1:{port}".encode()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as log:
                log.seek(log_offset)
                if expected in log.read():
                    return
            if self._process.poll() is not None:
                raise PgBouncerError(f"PgBouncer exited with code {self._process.returncode} before it listened; {self._log_hint()}")
            time.sleep(0.02)
        raise PgBouncerError(f"PgBouncer did not listen on 127.0.0.1:{port} within {self.ready_timeout:g} s; {self._log_hint()}")

    def _wait_ready(self) -> None:
        """One query through the pool: PgBouncer reaches the database and logs in."""
        try:
            with psycopg.connect(self.url, connect_timeout=max(2, round(self.ready_timeout)), autocommit=True) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PgBouncerError(f"PgBouncer is up but the database behind it does not answer: {message}; {self._log_hint()}") from exc

    def _log_hint(self) -> str:
        return f"its log ({self.log_path}) ends:\n{tail(self.log_path)}"

    def _stop_process(self, timeout: float = 5.0) -> None:
        process, self._process, self._pid = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            try:
                # The supervisor and PgBouncer share the group: SIGTERM reaches both. PgBouncer's
                # SIGTERM is its fast shutdown: every client and server link closed at once.
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                process.wait()
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # a PgBouncer left behind by a supervisor killed with -9
            except ProcessLookupError:
                pass
        if process.stdout is not None:
            process.stdout.close()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (every link is cut), then SIGKILL if it lingers; the config folder goes too.
        Safe to call twice."""
        self._stop_process(timeout)
        if self._folder is not None:
            if self.log_path is not None and self.log_path.is_relative_to(self._folder):
                self.log_path = None  # removed with the folder
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- what the harness reads --------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """PgBouncer is running (its supervisor exits as soon as it does)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """PgBouncer's own pid (not its supervisor's)."""
        return self._pid if self.alive else None

    @property
    def port(self) -> int:
        return self._ready().port

    @property
    def url(self) -> str:
        """``database_url`` pointed at PgBouncer: the same database, user and options, pooled."""
        url = make_url(self.database_url).set(host="127.0.0.1", port=self.port)
        if "host" in url.query:
            url = url.difference_update_query(["host"])
        return url.render_as_string(hide_password=False)

    @property
    def admin_url(self) -> str:
        """PgBouncer's admin console (database ``pgbouncer``): ``SHOW POOLS``, ``SHOW STATS``..."""
        return make_url(self.url).set(database="pgbouncer").render_as_string(hide_password=False)

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console (``POOLS``, ``STATS``, ``SERVERS``, ``CLIENTS``, ``VERSION``...)."""
        if not what.replace("_", "").isalpha():
            raise ValueError(f"not a SHOW command of PgBouncer: {what!r}")
        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5, row_factory=dict_row) as connection:
                return connection.execute(f"SHOW {what.upper()}").fetchall()
        except psycopg.Error as exc:
            raise PgBouncerError(f"PgBouncer's admin console does not answer: {exc}") from exc

    def cpu_seconds(self) -> float:
        """CPU time (user + system) PgBouncer has used since it started."""
        import psutil  # the harness's dependency (the bench extra), like the wire proxy's

        if self.pid is None:
            raise PgBouncerError("PgBouncer is not running")
        try:
            times = psutil.Process(self.pid).cpu_times()
        except psutil.Error as exc:
            raise PgBouncerError(f"PgBouncer is gone: {exc}") from exc
        return float(times.user + times.system)

    def describe(self) -> str:
        upstream = self.upstream
        return (f"PgBouncer ({self.pool_mode} pooling, {self.pool_size} server connections) on 127.0.0.1:{self.port} "
                f"in front of {upstream.host}:{upstream.port}/{upstream.dbname} (pid {self.pid})")

    def _ready(self) -> PgBouncerConfig:
        if self.config is None or self._process is None:
            raise PgBouncerError("PgBouncer has not been started")
        return self.config
