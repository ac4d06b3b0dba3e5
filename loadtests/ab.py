"""Run ApacheBench (``ab``) against the local service and parse its report."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from loadtests.errors import HarnessError

__all__ = [
    "ALLOWED_HOSTS",
    "AbError",
    "AbMissingError",
    "AbResult",
    "AbRun",
    "build_ab_command",
    "normalise_target",
    "find_ab",
    "parse_ab_output",
    "run_ab",
]

#: Load tests must never hit anything but this machine.
ALLOWED_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: ab.c refuses more (MAX_CONCURRENCY); failing here gives a clearer error.
MAX_CONCURRENCY = 20000

INSTALL_HINT = (
    "ApacheBench (ab) not found. Install it: Debian/Ubuntu `sudo apt-get install -y apache2-utils`, "
    "Fedora `dnf install httpd-tools`, macOS ships it (or `brew install httpd`), "
    "or run the loadtest service of docker-compose.yml."
)


class AbMissingError(HarnessError):
    """The ``ab`` executable could not be found."""

    def __init__(self, message: str = INSTALL_HINT) -> None:
        super().__init__(message)


class AbError(HarnessError):
    """ab ran but produced no parsable result."""


def find_ab() -> str:
    """Return the path of ``ab``; ``IOBENCH_AB`` (a path or a command name) overrides ``PATH``."""
    override = os.environ.get("IOBENCH_AB")
    if override:
        found = shutil.which(override)
        if found is None:
            raise AbMissingError(f"IOBENCH_AB={override!r} is not an executable. {INSTALL_HINT}")
        return found
    found = shutil.which("ab")
    if found is None:
        raise AbMissingError()
    return found


@dataclass(frozen=True)
class AbResult:
    """One ab run. Times are milliseconds.

    ab's printed percentile table is in whole milliseconds; ``run_ab`` replaces it with the
    fractional values of ab's ``-e`` CSV, which fast local routes need.

    ``complete`` counts every finished request, failed or not: with ``-r`` even refused
    connections end up in it. ``failed`` is ab's ``Failed requests``, which can count one
    request twice (a reset is both a Receive and an Exception failure), so it may exceed
    ``complete``. Values ab did not print (no successful timing, or a single request) are NaN.

    ab's own ``requests_per_second`` counts failed and non-2xx answers too, so a server that
    degrades into fast 503s would look faster: ``successful_per_second`` is what iobench
    calls throughput everywhere.
    """

    complete: int
    failed: int
    non_2xx: int
    failed_connect: int
    failed_receive: int
    failed_length: int
    failed_exceptions: int
    requests_per_second: float
    successful: int
    successful_per_second: float
    total_seconds: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    concurrency: int
    requests: int
    keepalive: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON; NaN becomes None because JSON has no NaN."""
        return {
            key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in asdict(self).items()
        }


def normalise_target(url: str) -> str:
    """``url`` rebuilt from its checked parts; ValueError unless it is http(s) on this machine."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"ab target must be an http:// or https:// URL, got {url!r}")
    if parts.username is not None or parts.password is not None:
        # ab's own URL parser does not understand userinfo; reject rather than guess what it targets.
        raise ValueError(f"ab target must not contain credentials: {url!r}")
    host = parts.hostname
    if host not in ALLOWED_HOSTS:
        allowed = ", ".join(sorted(ALLOWED_HOSTS))
        raise ValueError(f"load tests may only target {allowed}; refusing host {host!r} in {url!r}")
    port = parts.port  # raises ValueError for a malformed port
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    # ab rejects a URL without a path ("ab: invalid URL"), so the root must be spelled out.
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    # Rebuilt from the validated parts so ab cannot read a different host out of the original string.
    return f"{parts.scheme}://{netloc}{path}{query}"


def build_ab_command(
    url: str,
    requests: int,
    concurrency: int,
    *,
    keepalive: bool = False,
    timeout_s: float = 30,
    ab_path: str = "ab",
    csv_path: str | None = None,
    gnuplot_path: str | None = None,
) -> list[str]:
    """The argv for one ab run; raises ValueError for counts ab would reject or a non-local host."""
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    if requests < concurrency:
        raise ValueError(
            f"ab needs requests >= concurrency (got requests={requests}, concurrency={concurrency}): "
            "raise requests or lower concurrency"
        )
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    target = normalise_target(url)
    # ab reads -s with atoi(): "0.5" would become 0, so round up to whole seconds.
    timeout = str(max(1, math.ceil(timeout_s)))
    cmd = [
        ab_path,
        "-n", str(requests),
        "-c", str(concurrency),
        "-s", timeout,
        "-l",  # JSON bodies vary in length; without -l ab counts that as Length failures
        "-r",  # count socket receive errors instead of aborting the whole run
        "-q",  # progress lines would otherwise fill the stderr we report on failure
    ]  # fmt: skip
    if keepalive:
        cmd.append("-k")
    if csv_path is not None:
        cmd += ["-e", csv_path]  # percentiles with fractions of a millisecond
    if gnuplot_path is not None:
        cmd += ["-g", gnuplot_path]  # each request's start (whole seconds) and times: the steady window's fallback
    cmd.append(target)
    return cmd


def _int(pattern: str, text: str) -> int | None:
    match = re.search(pattern, text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _float(pattern: str, text: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else math.nan


def _percentiles(text: str) -> dict[int, float]:
    head = text.find("Percentage of the requests served within a certain time")
    if head < 0:
        return {}
    return {
        int(pct): float(ms)
        for pct, ms in re.findall(r"^\s*(\d+)%\s+(\d+)", text[head:], re.MULTILINE)
    }


def parse_ab_output(text: str, *, keepalive: bool = False, requests: int | None = None) -> AbResult:
    """Parse ab's stdout; raises AbError when there is no ``Complete requests`` line.

    ``requests`` is what was asked for (ab does not echo ``-n``); it defaults to ``complete``.
    """
    complete = _int(r"^Complete requests:\s+(\d+)", text)
    if complete is None:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise AbError(f"ab output has no 'Complete requests' line; output ends with:\n{tail}")

    breakdown = re.search(
        r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", text
    )
    connect, receive, length, exceptions = (
        (int(g) for g in breakdown.groups()) if breakdown else (0, 0, 0, 0)
    )

    failed = _int(r"^Failed requests:\s+(\d+)", text) or 0
    non_2xx = _int(r"^Non-2xx responses:\s+(\d+)", text) or 0
    successful = max(0, complete - failed - non_2xx)
    total_seconds = _float(r"^Time taken for tests:\s+([\d.]+) seconds", text)
    pcts = _percentiles(text)
    if not pcts and complete == 1:
        # ab prints the table only when more than one request completed; for exactly one,
        # every percentile is that request's time, the max of the Connection Times "Total:" row.
        total_row = re.search(r"^Total:\s+([\d.\s]+)$", text, re.MULTILINE)
        if total_row:
            pcts = dict.fromkeys((50, 90, 99, 100), float(total_row.group(1).split()[-1]))

    return AbResult(
        complete=complete,
        failed=failed,
        non_2xx=non_2xx,
        failed_connect=connect,
        failed_receive=receive,
        failed_length=length,
        failed_exceptions=exceptions,
        requests_per_second=_float(r"^Requests per second:\s+([\d.]+)", text),
        successful=successful,
        successful_per_second=successful / total_seconds if total_seconds > 0 else math.nan,
        total_seconds=total_seconds,
        # Two "Time per request" lines: the first is per request as a client sees it, the
        # second ("across all concurrent requests") is just 1000 / requests_per_second.
        mean_ms=_float(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)$", text),
        p50_ms=pcts.get(50, math.nan),
        p90_ms=pcts.get(90, math.nan),
        p99_ms=pcts.get(99, math.nan),
        max_ms=pcts.get(100, math.nan),
        concurrency=_int(r"^Concurrency Level:\s+(\d+)", text) or 0,
        requests=complete if requests is None else requests,
        # ab prints "Keep-Alive requests:" exactly when it ran with -k.
        keepalive=keepalive or "Keep-Alive requests:" in text,
    )


def parse_percentile_csv(text: str) -> dict[int, float]:
    """ab's ``-e`` file: ``Percentage served,Time in ms`` rows for 0..100."""
    rows = re.findall(r"^(\d+),([\d.]+)$", text, re.MULTILINE)
    return {int(pct): float(ms) for pct, ms in rows}


def with_fine_percentiles(result: AbResult, csv_text: str) -> AbResult:
    """``result`` with p50/p90/p99/max from ab's CSV, when it holds them."""
    pcts = parse_percentile_csv(csv_text)
    # ab 2.3 indexes its sorted timings with round(done * pct / 100): below 100 successful
    # requests the 99% row reads one past the end (seen as p99 < p90), so keep the table then.
    if result.complete - result.failed < 100 or not {50, 90, 99, 100} <= pcts.keys():
        return result
    fine = (pcts[50], pcts[90], pcts[99], pcts[100])
    if list(fine) != sorted(fine):
        return result
    return replace(result, p50_ms=fine[0], p90_ms=fine[1], p99_ms=fine[2], max_ms=fine[3])


def _tail(text: str, lines: int = 10) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "<empty>"


def run_ab(
    url: str,
    requests: int,
    concurrency: int,
    *,
    keepalive: bool = False,
    timeout_s: float = 30,
    time_limit_s: float | None = None,
) -> AbResult:
    """Run ab and parse its report; ab is killed (AbError) if it outlives ``time_limit_s``.

    The default limit lets every round of ``concurrency`` requests take the full socket
    timeout, plus 10 s: ab's ``-s`` only fires when *no* socket has activity, so a server
    that trickles bytes could otherwise keep ab running indefinitely.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as csv_file:
        return _run_ab(url, requests, concurrency, keepalive, timeout_s, time_limit_s, csv_file.name)


def _run_ab(
    url: str,
    requests: int,
    concurrency: int,
    keepalive: bool,
    timeout_s: float,
    time_limit_s: float | None,
    csv_path: str,
) -> AbResult:
    cmd = build_ab_command(
        url, requests, concurrency, keepalive=keepalive, timeout_s=timeout_s, ab_path=find_ab(), csv_path=csv_path
    )
    if time_limit_s is None:
        time_limit_s = math.ceil(requests / concurrency) * max(1, math.ceil(timeout_s)) + 10.0
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", timeout=time_limit_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        stderr = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else exc.stderr or ""
        )
        raise AbError(
            f"ab exceeded the {time_limit_s:g}s wall-clock limit and was killed: {' '.join(cmd)}\n"
            f"stderr: {_tail(stderr)}"
        ) from None
    try:
        # A non-zero exit with a full report (e.g. after SIGINT) is still a result.
        result = parse_ab_output(proc.stdout, keepalive=keepalive, requests=requests)
    except AbError:
        raise AbError(
            f"ab exited with code {proc.returncode} without a report: {' '.join(cmd)}\n"
            f"stderr: {_tail(proc.stderr)}"
        ) from None
    with open(csv_path, errors="replace") as csv_file:
        return with_fine_percentiles(result, csv_file.read())


class AbRun:
    """ab running in the background until the harness stops it: the steady-state sample's load.

    ab is started with ``requests`` as an upper bound and stopped with SIGINT once the harness has
    counted its window: ab then prints its report for what completed (the summary line the
    harness reads for failures) and writes its ``-e`` and ``-g`` files. Requests in flight at the
    stop are dropped, so the run never drains through a part-empty server. Usage::

        with AbRun(url, 50_000, 40) as load:
            ...  # warm-up, window
            result = load.stop()
    """

    def __init__(self, url: str, requests: int, concurrency: int, *, keepalive: bool = False, timeout_s: float = 30,
                 gnuplot: bool = False) -> None:
        self._files = tempfile.TemporaryDirectory(prefix="iobench-ab-")
        folder = Path(self._files.name)
        self.csv_path, self.gnuplot_path = folder / "percentiles.csv", (folder / "requests.tsv" if gnuplot else None)
        self.requests, self.keepalive = requests, keepalive
        self.command = build_ab_command(url, requests, concurrency, keepalive=keepalive, timeout_s=timeout_s,
                                        ab_path=find_ab(), csv_path=str(self.csv_path),
                                        gnuplot_path=str(self.gnuplot_path) if self.gnuplot_path else None)
        self._process: subprocess.Popen[str] | None = None
        #: Wall-clock (epoch) and monotonic times ab was started and stopped at.
        self.started_epoch = self.started_ns = self.stopped_epoch = 0.0

    def start(self) -> AbRun:
        self.started_epoch, self.started_ns = time.time(), time.monotonic_ns()
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         errors="replace")
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def finished(self) -> bool:
        """ab has exited on its own (every request done, or it gave up)."""
        return self._process is not None and self._process.poll() is not None

    def stop(self, *, wait_s: float = 30.0) -> AbResult:
        """Stop ab (SIGINT: it reports what completed) and parse its report; AbError without one."""
        assert self._process is not None, "ab was not started"
        self.stopped_epoch = time.time()
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = self._process.communicate(timeout=wait_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            stdout, stderr = self._process.communicate()
            raise AbError(f"ab did not stop within {wait_s:g}s of SIGINT: {' '.join(self.command)}") from None
        try:
            result = parse_ab_output(stdout, keepalive=self.keepalive, requests=self.requests)
        except AbError:
            raise AbError(f"ab exited with code {self._process.returncode} without a report: {' '.join(self.command)}\n"
                          f"stderr: {_tail(stderr)}") from None
        if not self.csv_path.exists():  # ab gave up before its percentiles (its report says how far it got)
            return result
        return with_fine_percentiles(result, self.csv_path.read_text(errors="replace"))

    def gnuplot_text(self) -> str:
        """ab's ``-g`` file, once stopped ('' when not asked for or not written)."""
        if self.gnuplot_path is None or not self.gnuplot_path.exists():
            return ""
        return self.gnuplot_path.read_text(errors="replace")

    def __enter__(self) -> AbRun:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()
        self._files.cleanup()
