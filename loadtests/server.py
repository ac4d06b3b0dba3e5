"""Run the service under test as a uvicorn subprocess, and know when it is ready."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from app.settings import Settings
from loadtests.errors import HarnessError


class ServerError(HarnessError):
    """The service did not come up (the message carries the tail of its log)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServiceProcess:
    """``uvicorn --factory app.main:create_app`` with ``settings``, logging to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, *, ready_timeout: float = 30.0) -> None:
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": settings.port or free_port()})
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.settings.port),
            "--workers", str(self.settings.workers), "--loop", self.settings.loop,
            "--log-level", "warning", "--no-access-log",
        ]
        env = {**os.environ, **self.settings.to_env()}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerError(
                    f"the service exited with code {self._process.returncode} before it was ready; "
                    f"its log ({self.log_path}) ends:\n{tail(self.log_path)}"
                )
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"the service was not ready after {self.ready_timeout:.0f} s; its log ends:\n{tail(self.log_path)}")

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (uvicorn's graceful shutdown closes the pools), then SIGKILL if it lingers."""
        if self._process is None:
            return
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
