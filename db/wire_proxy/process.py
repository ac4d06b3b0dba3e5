"""``ProxyProcess``: the proxy as a child process, started, read and stopped from Python.

    with ProxyProcess(database_url, rtt_ms=1.0) as proxy:
        service_settings.database_url = proxy.url   # the same database, 1 ms further away
        proxy.reset()                               # counts so far, then zero
        ...                                         # the load
        counters = proxy.counters()                 # WireCounters: round_trips, statements, sessions...
        cpu = proxy.cpu_seconds()                   # the proxy's own CPU (user + system) so far
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx
import psutil
from pydantic import BaseModel

from db.wire_proxy.counters import WireCounters
from db.wire_proxy.rtt import parse_rtt_ms


class ProxyError(RuntimeError):
    """The proxy did not start, or does not answer on its control port."""


class ReadyLine(BaseModel):
    """What the proxy prints once it listens."""

    port: int
    control_port: int
    upstream: str
    rtt_ms: float
    timer_lead_ms: float


def upstream_of(database_url: str) -> tuple[str, int]:
    """The TCP host and port of ``database_url`` (the proxy relays TCP only, not a Unix socket)."""
    from sqlalchemy.engine import make_url  # here, not at the top: reading MAX_RTT_MS must load no driver library

    url = make_url(database_url)
    host = url.host or url.query.get("host")
    if not isinstance(host, str) or not host or host.startswith("/"):
        raise ValueError(f"the wire proxy needs a database URL with a TCP host, not {url.render_as_string()}")
    return host, url.port or 5432


class ProxyProcess:
    """``python -m db.wire_proxy`` in front of the database at ``database_url``, adding ``rtt_ms``.

    ``log_path`` receives the proxy's warnings (default: this process's stderr).
    """

    def __init__(self, database_url: str, rtt_ms: float, *, log_path: Path | None = None, port: int = 0,
                 connect_timeout: float = 5.0, ready_timeout: float = 10.0) -> None:
        self.database_url = database_url
        self.rtt_ms = parse_rtt_ms(str(rtt_ms))
        self.upstream = upstream_of(database_url)
        self.log_path = log_path
        self.requested_port = port
        self.connect_timeout = connect_timeout
        self.ready_timeout = ready_timeout
        self.ready: ReadyLine | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        host, port = self.upstream
        command = [
            sys.executable, "-m", "db.wire_proxy", "--upstream", f"{host}:{port}", "--rtt-ms", repr(self.rtt_ms),
            "--port", str(self.requested_port), "--connect-timeout", str(self.connect_timeout),
            "--parent-pid", str(os.getpid()),
        ]
        log: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps its own copy)
        try:
            # Its own session: a Ctrl-C meant for the service does not cut the database from under it.
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        finally:
            if log is not None:
                log.close()
        try:
            self.ready = ReadyLine.model_validate_json(self._read_ready_line())
        except BaseException:
            self.stop()
            raise
        return self

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
                    raise ProxyError(f"the wire proxy was not ready after {self.ready_timeout:g} s{self._log_hint()}")
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    code = self._process.wait()
                    raise ProxyError(f"the wire proxy exited with code {code} before it was ready{self._log_hint()}")
                line += chunk
        stdout.close()  # it prints nothing more there
        return line

    def _log_hint(self) -> str:
        return f"; its log is {self.log_path}" if self.log_path else "; see its messages above"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (every link is cut), then SIGKILL if it lingers. Safe to call twice."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- what the harness reads --------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def port(self) -> int:
        return self._ready().port

    @property
    def url(self) -> str:
        """``database_url`` pointed at the proxy: the same database, ``rtt_ms`` further away."""
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url).set(host="127.0.0.1", port=self.port)
        if "host" in url.query:
            url = url.difference_update_query(["host"])
        return url.render_as_string(hide_password=False)

    @property
    def timer_lead_ms(self) -> float:
        """How early the proxy wakes for a due chunk, measured at its start (see server.measure_timer_lead)."""
        return self._ready().timer_lead_ms

    def counters(self) -> WireCounters:
        """Everything counted since the start or the last reset."""
        return WireCounters.model_validate_json(self._control("GET", "/counters"))

    def reset(self) -> WireCounters:
        """The counts so far, and zero them (one step in the proxy: no message falls between)."""
        return WireCounters.model_validate_json(self._control("POST", "/reset"))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the proxy process has used since it started."""
        if self.pid is None:
            raise ProxyError("the wire proxy is not running")
        try:
            times = psutil.Process(self.pid).cpu_times()
        except psutil.Error as exc:
            raise ProxyError(f"the wire proxy is gone: {exc}") from exc
        return float(times.user + times.system)

    def describe(self) -> str:
        host, port = self.upstream
        return (f"wire proxy on 127.0.0.1:{self.port} adds {self.rtt_ms:g} ms RTT to {host}:{port} "
                f"(pid {self.pid}, control port {self._ready().control_port})")

    def _ready(self) -> ReadyLine:
        if self.ready is None:
            raise ProxyError("the wire proxy has not been started")
        return self.ready

    def _control(self, method: str, path: str, timeout: float = 5.0) -> str:
        url = f"http://127.0.0.1:{self._ready().control_port}{path}"
        try:
            response = httpx.request(method, url, timeout=timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ProxyError(f"the wire proxy does not answer on its control port: {exc}") from exc
        return response.text
