"""loadtests.ab: command building, parsing real ab output, and one live run."""

from __future__ import annotations

import json
import math
import shutil
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadtests.ab import (
    AbError,
    AbMissingError,
    AbResult,
    build_ab_command,
    find_ab,
    parse_ab_output,
    run_ab,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ab"
NAN = math.nan


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def result(**fields: Any) -> AbResult:
    """An AbResult whose successful count and rate follow from complete, failed and non_2xx."""
    defaults: dict[str, Any] = dict(
        failed=0, non_2xx=0, failed_connect=0, failed_receive=0, failed_length=0,
        failed_exceptions=0, keepalive=False,
    )  # fmt: skip
    merged = {**defaults, **fields}
    successful = max(0, int(merged["complete"]) - int(merged["failed"]) - int(merged["non_2xx"]))
    seconds = float(merged["total_seconds"])
    merged.update(successful=successful, successful_per_second=successful / seconds if seconds > 0 else NAN)
    return AbResult(**merged)


def same(a: AbResult, b: AbResult) -> bool:
    # NaN != NaN, so compare through to_dict(), which maps NaN to None.
    return a.to_dict() == b.to_dict()


EXPECTED = {
    "ok.txt": result(
        complete=200, requests=200, concurrency=10, requests_per_second=5040.07,
        total_seconds=0.040, mean_ms=1.984, p50_ms=2, p90_ms=2, p99_ms=3, max_ms=3,
    ),
    "non2xx.txt": result(
        complete=200, requests=200, concurrency=10, non_2xx=50, requests_per_second=5228.35,
        total_seconds=0.038, mean_ms=1.913, p50_ms=2, p90_ms=2, p99_ms=2, max_ms=2,
    ),
    "failed_receive.txt": result(
        complete=100, requests=100, concurrency=10, failed=40, failed_receive=20,
        failed_exceptions=20, requests_per_second=5521.51, total_seconds=0.018, mean_ms=1.811,
        p50_ms=2, p90_ms=2, p99_ms=2, max_ms=2,
    ),
    "failed_length.txt": result(
        complete=100, requests=100, concurrency=10, failed=85, failed_length=85,
        requests_per_second=6316.72, total_seconds=0.016, mean_ms=1.583,
        p50_ms=1, p90_ms=2, p99_ms=2, max_ms=2,
    ),
    # 20 connections closed with no reply, and ab still reports no failures.
    "closed_no_reply.txt": result(
        complete=100, requests=100, concurrency=10, requests_per_second=5072.28,
        total_seconds=0.020, mean_ms=1.972, p50_ms=2, p90_ms=2, p99_ms=3, max_ms=3,
    ),
    "keepalive.txt": result(
        complete=200, requests=200, concurrency=10, keepalive=True, requests_per_second=20990.76,
        total_seconds=0.010, mean_ms=0.476, p50_ms=0, p90_ms=1, p99_ms=1, max_ms=1,
    ),
    # No percentile table for one request: all percentiles are that request's time.
    "single.txt": result(
        complete=1, requests=1, concurrency=1, requests_per_second=1161.44,
        total_seconds=0.001, mean_ms=0.861, p50_ms=1, p90_ms=1, p99_ms=1, max_ms=1,
    ),
    # With -r a refused port "completes" every request, all of them failed, all in 0 ms.
    "refused.txt": result(
        complete=50, requests=50, concurrency=5, failed=75, failed_receive=50,
        failed_exceptions=25, requests_per_second=42553.19, total_seconds=0.001, mean_ms=0.117,
        p50_ms=0, p90_ms=0, p99_ms=0, max_ms=0,
    ),
    "interrupted.txt": result(
        complete=0, requests=0, concurrency=2, requests_per_second=NAN, total_seconds=0.496,
        mean_ms=NAN, p50_ms=NAN, p90_ms=NAN, p99_ms=NAN, max_ms=NAN,
    ),
}  # fmt: skip


def test_every_fixture_is_covered() -> None:
    reportless = {"refused_no_r.txt", "timeout.txt"}
    assert {p.name for p in FIXTURES.glob("*.txt")} == set(EXPECTED) | reportless


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_fixture(name: str) -> None:
    parsed = parse_ab_output(fixture(name))
    assert same(parsed, EXPECTED[name]), parsed


@pytest.mark.parametrize("name", ["refused_no_r.txt", "timeout.txt"])
def test_parse_without_report_raises(name: str) -> None:
    with pytest.raises(AbError, match="Complete requests"):
        parse_ab_output(fixture(name))


def test_parse_takes_requested_count_and_keepalive_flag() -> None:
    parsed = parse_ab_output(fixture("interrupted.txt"), requests=10, keepalive=True)
    assert parsed.requests == 10
    assert parsed.keepalive is True


def test_to_dict_is_json_safe() -> None:
    data = parse_ab_output(fixture("interrupted.txt")).to_dict()
    assert data["p99_ms"] is None and data["complete"] == 0
    json.dumps(data, allow_nan=False)
    assert parse_ab_output(fixture("ok.txt")).to_dict()["requests_per_second"] == 5040.07


def test_command_flags() -> None:
    cmd = build_ab_command("http://127.0.0.1:8000/sync", 100, 10, ab_path="/usr/bin/ab")
    assert cmd[0] == "/usr/bin/ab"
    assert cmd[-1] == "http://127.0.0.1:8000/sync"
    assert cmd[cmd.index("-n") + 1] == "100"
    assert cmd[cmd.index("-c") + 1] == "10"
    assert cmd[cmd.index("-s") + 1] == "30"
    assert {"-l", "-r"} <= set(cmd)
    assert "-k" not in cmd


def test_command_keepalive_toggles_k() -> None:
    assert "-k" in build_ab_command("http://127.0.0.1:8000/", 10, 1, keepalive=True)
    assert "-k" not in build_ab_command("http://127.0.0.1:8000/", 10, 1, keepalive=False)


@pytest.mark.parametrize(("timeout_s", "flag"), [(5, "5"), (0.5, "1"), (2.1, "3")])
def test_command_timeout_is_whole_seconds(timeout_s: float, flag: str) -> None:
    cmd = build_ab_command("http://127.0.0.1:8000/", 10, 1, timeout_s=timeout_s)
    assert cmd[cmd.index("-s") + 1] == flag


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/"),
        ("http://localhost:8000/a?b=1", "http://localhost:8000/a?b=1"),
        ("http://LOCALHOST/", "http://localhost/"),
        ("http://[::1]:8000", "http://[::1]:8000/"),
    ],
)
def test_command_normalises_url(url: str, target: str) -> None:
    assert build_ab_command(url, 1, 1)[-1] == target


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "http://10.0.0.5:8000/",
        "http://0.0.0.0:8000/",
        "http://127.0.0.1.nip.io/",
        "http://127.0.0.1@example.com/",
        "http://example.com@127.0.0.1/",
        "ftp://127.0.0.1/",
        "127.0.0.1:8000/",
    ],
)
def test_command_rejects_non_local_targets(url: str) -> None:
    with pytest.raises(ValueError):
        build_ab_command(url, 10, 1)


def test_command_requires_requests_at_least_concurrency() -> None:
    with pytest.raises(ValueError, match="requests >= concurrency"):
        build_ab_command("http://127.0.0.1:8000/", 5, 10)
    assert build_ab_command("http://127.0.0.1:8000/", 10, 10)


@pytest.mark.parametrize(("n", "c"), [(0, 1), (10, 0), (30000, 20001)])
def test_command_rejects_counts_ab_rejects(n: int, c: int) -> None:
    with pytest.raises(ValueError):
        build_ab_command("http://127.0.0.1:8000/", n, c)


def test_find_ab_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOBENCH_AB", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(AbMissingError, match="apache2-utils"):
        find_ab()


def test_find_ab_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "my-ab"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("IOBENCH_AB", str(fake))
    assert find_ab() == str(fake)
    monkeypatch.setenv("IOBENCH_AB", str(tmp_path / "nope"))
    with pytest.raises(AbMissingError, match="IOBENCH_AB"):
        find_ab()


def test_run_ab_reports_exit_code_and_stderr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "ab"
    fake.write_text(
        "#!/bin/sh\necho 'Benchmarking 127.0.0.1 (be patient)...'\necho 'boom: it broke' >&2\nexit 111\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("IOBENCH_AB", str(fake))
    with pytest.raises(AbError, match=r"(?s)code 111.*boom: it broke"):
        run_ab("http://127.0.0.1:9/", 1, 1)


class _JsonHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "thread": threading.get_ident()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JsonHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


needs_ab = pytest.mark.skipif(shutil.which("ab") is None, reason="ApacheBench (ab) not installed")


@needs_ab
@pytest.mark.ab
def test_run_ab_live(local_server: str) -> None:
    res = run_ab(local_server, 50, 5, time_limit_s=10)
    assert res.complete == 50
    assert res.failed == 0
    assert res.non_2xx == 0
    assert (res.requests, res.concurrency, res.keepalive) == (50, 5, False)
    assert res.requests_per_second > 0
    assert 0 <= res.p50_ms <= res.p90_ms <= res.p99_ms <= res.max_ms


@needs_ab
@pytest.mark.ab
def test_run_ab_refused_counts_failures(closed_port: int) -> None:
    res = run_ab(f"http://127.0.0.1:{closed_port}/", 10, 2, time_limit_s=10)
    assert res.complete == 10
    assert res.failed >= 10
    assert res.failed_receive == 10


@needs_ab
@pytest.mark.ab
def test_run_ab_kills_at_time_limit(silent_port: int) -> None:
    with pytest.raises(AbError, match="wall-clock limit"):
        run_ab(f"http://127.0.0.1:{silent_port}/", 2, 1, timeout_s=30, time_limit_s=0.5)
