"""The completion log (app/completions.py): its file format, writer and reader, and the service
recording exactly its completed requests, one file per worker."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from app import completions
from app.completions import (
    DEFAULT_CAPACITY,
    HEADER,
    MAGIC,
    CompletionLog,
    CompletionLogError,
    CompletionLogOverflow,
    CompletionRecorder,
    CompletionWriter,
    Counts,
    Mark,
    file_name,
    route_key,
)
from app.main import create_app
from app.settings import Settings
from loadtests.server import ServiceProcess

# --- the file, written and read in this process ---------------------------------------------------


def test_the_file_is_the_documented_layout(tmp_path: Path) -> None:
    writer = CompletionWriter(tmp_path, capacity=4)
    writer.ok(111, route_key("/bench/a"))
    writer.ok(222)
    writer.other()
    data = (tmp_path / file_name(os.getpid())).read_bytes()
    assert writer.path.name == f"completions-{os.getpid()}.bin"
    assert len(data) == 32 + 4 * 16
    assert HEADER.unpack_from(data) == (MAGIC, 4, 2, 1)
    assert struct.unpack_from("<8Q", data, 32) == (111, route_key("/bench/a"), 222, 0, 0, 0, 0, 0)
    assert [path.name for path in tmp_path.iterdir()] == [writer.path.name], "no building file left behind"


def test_the_default_capacity_is_two_mebibytes_of_slots(tmp_path: Path) -> None:
    writer = CompletionWriter(tmp_path)
    assert DEFAULT_CAPACITY == 131072 and writer.path.stat().st_size == 32 + (2 << 20)


def test_one_routes_completions_are_told_from_the_others(tmp_path: Path) -> None:
    writer, log = CompletionWriter(tmp_path, capacity=8), CompletionLog(tmp_path)
    mark = log.snapshot()
    for ns, path in ((10, "/bench/a"), (20, "/bench/b"), (30, "/bench/a")):
        writer.ok(ns, route_key(path))
    assert log.since(mark, "/bench/a") == [10, 30] and log.since(mark) == [10, 20, 30]
    assert log.entries_since(mark)[1] == (20, route_key("/bench/b"))


def test_round_trip_in_order_since_a_mark(tmp_path: Path) -> None:
    writer, log = CompletionWriter(tmp_path, capacity=8), CompletionLog(tmp_path)
    empty = log.snapshot()
    assert (empty.ok, empty.other, empty.files) == (0, 0, {writer.path.name: Counts(0, 0)})
    for ns in (10, 20, 30):
        writer.ok(ns)
    writer.other()
    mark = log.snapshot()
    assert (mark.ok, mark.other) == (3, 1)
    assert log.since(empty) == [10, 20, 30]
    for ns in (40, 50, 60, 70, 80, 90):  # round the ring of 8
        writer.ok(ns)
    assert log.since(mark) == [40, 50, 60, 70, 80, 90]
    assert log.since(log.snapshot()) == []


def test_the_slot_is_written_before_the_count_that_publishes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stores: list[int] = []

    class Watched(struct.Struct):
        def pack_into(self, buffer: Any, offset: int, *values: Any) -> None:
            stores.append(offset)
            super().pack_into(buffer, offset, *values)

    writer = CompletionWriter(tmp_path, capacity=16)
    monkeypatch.setattr(completions, "SLOT", Watched("<QQ"))
    monkeypatch.setattr(completions, "COUNT", Watched("<Q"))
    writer.ok(5)
    writer.ok(6)
    assert stores == [32, 16, 48, 16], "slot 0, ok; slot 1, ok"


WRITER = """
import sys, time
from pathlib import Path
from app.completions import CompletionWriter
writer = CompletionWriter(Path(sys.argv[1]), capacity=int(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[3])):
    writer.ok(time.monotonic_ns())
"""


def test_a_reader_never_sees_a_count_ahead_of_its_slots(tmp_path: Path) -> None:
    """Another process writes as fast as it can while this one reads: every slot a count covers is
    written (never the file's zero), in order, and each read extends the one before."""
    total = 100_000
    with subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(DEFAULT_CAPACITY), str(total)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline() == "ready\n"
        log = CompletionLog(tmp_path)
        mark = log.snapshot()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        reads, before = 0, list[int]()
        while writer.poll() is None or reads == 0:
            times = log.since(mark)
            assert times[: len(before)] == before and 0 not in times, "a count published an unwritten slot"
            before, reads = times, reads + 1
    assert writer.returncode == 0
    final = log.since(mark)
    assert len(final) == total and final == sorted(final) and reads > 1


def test_more_completions_than_slots_since_the_mark_is_an_overflow(tmp_path: Path) -> None:
    writer, log = CompletionWriter(tmp_path, capacity=4), CompletionLog(tmp_path)
    mark = log.snapshot()
    for ns in range(1, 5):
        writer.ok(ns)
    assert log.since(mark) == [1, 2, 3, 4]  # exactly full: nothing lost
    writer.ok(5)
    with pytest.raises(CompletionLogOverflow, match="5 completions since the mark, more than its 4 slots"):
        log.since(mark)
    assert log.since(log.snapshot()) == []  # a new mark reads on


def test_two_workers_files_are_merged_with_one_that_appeared_after_the_mark(tmp_path: Path) -> None:
    """This process's file and another process's, which appears after the mark: one clock, one order."""
    mine, log = CompletionWriter(tmp_path, capacity=8), CompletionLog(tmp_path)
    mine.ok(time.monotonic_ns())
    mark = log.snapshot()
    first = time.monotonic_ns()
    mine.ok(first)
    other = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), "8", "2"], input="go\n", text=True,
                           capture_output=True, check=True)
    assert other.stdout == "ready\n"
    last = time.monotonic_ns()
    mine.ok(last)
    merged = log.since(mark)
    assert len(log.paths()) == 2 and len(merged) == 4
    assert merged[0] == first and merged[-1] == last and first < merged[1] <= merged[2] < last
    assert log.snapshot().ok == 5


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / file_name(1)).write_bytes(b"NOTMINE!" + bytes(24))
    with pytest.raises(CompletionLogError, match="not a completion file"):
        CompletionLog(tmp_path).snapshot()


# --- the middleware ---------------------------------------------------------------------------------


async def test_the_recorder_records_after_the_last_body_message(tmp_path: Path) -> None:
    """Nothing is recorded until the last body message has been sent; a request that raises is an
    ``other`` (the server's 500 is sent from outside the middleware); /ping is not recorded."""
    writer, log = CompletionWriter(tmp_path, capacity=8), CompletionLog(tmp_path)
    mark = log.snapshot()
    counted_while_sending: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug")

    async def send(message: Message) -> None:
        counted_while_sending.append(log.snapshot().ok)

    async def receive() -> Message:
        return {"type": "http.request"}

    before = time.monotonic_ns()
    await CompletionRecorder(app, writer)({"type": "http", "path": "/x"}, receive, send)
    after = time.monotonic_ns()
    assert counted_while_sending == [0, 0, 0]
    [recorded] = log.since(mark)
    assert before <= recorded <= after
    with pytest.raises(RuntimeError):
        await CompletionRecorder(failing, writer)({"type": "http", "path": "/x"}, receive, send)
    await CompletionRecorder(app, writer)({"type": "http", "path": "/ping"}, receive, send)
    assert (log.snapshot().ok, log.snapshot().other) == (1, 1)


# --- the service ------------------------------------------------------------------------------------


def settled(log: CompletionLog, ok: int) -> Mark:
    """The log once it counts ``ok`` 2xx completions: a worker records one just after sending its last
    byte, so the client may hold the response a moment before the count moves (a few ms at most)."""
    deadline = time.monotonic() + 5
    while (mark := log.snapshot()).ok < ok and time.monotonic() < deadline:
        time.sleep(0.005)
    return mark


@pytest.mark.postgres
def test_the_service_records_exactly_its_completed_requests(settings: Settings, tmp_path: Path) -> None:
    recorded = settings.model_copy(update={"completions_dir": tmp_path / "completions", "port": 0})
    good = ["/bench/lookup/sync/psycopg2?id=1", "/bench/lookup/async/asyncpg?id=2", "/bench/wait/async/asyncio?seconds=0",
            "/bench/lookup/minimal/psycopg2?id=3", "/sync"] * 4
    bad = ["/bench/lookup/sync/psycopg2?id=0", f"/bench/lookup/async/asyncpg?id={settings.seed_rows + 1}",
           "/bench/nope", "/bench/lookup/minimal/asyncpg?id=x"]
    with ServiceProcess(recorded, tmp_path / "server.log") as server:
        log = CompletionLog(tmp_path / "completions")
        [path] = log.paths()
        assert path.name == file_name(int(httpx.get(f"{server.url}/config").json()["pid"]))
        mark = settled(log, ok=1)  # /config itself is a completion: counted from here
        started = time.monotonic_ns()
        with httpx.Client(base_url=server.url) as client:
            statuses = [client.get(url).status_code for url in good + bad]
            assert all(client.get("/ping").status_code == 200 for _ in range(5))
        now = settled(log, ok=1 + len(good))
        ended = time.monotonic_ns()
        assert statuses == [200] * len(good) + [422, 404, 404, 422]
        times = log.since(mark)
        config = httpx.get(f"{server.url}/config").json()
    assert len(times) == len(good) and (now.ok - mark.ok, now.other - mark.other) == (len(good), len(bad))
    assert times == sorted(times) and started <= times[0] and times[-1] <= ended
    assert config["completions_dir"] == str((tmp_path / "completions").resolve())


@pytest.mark.postgres
def test_each_worker_writes_its_own_file_and_both_are_read(settings: Settings, tmp_path: Path) -> None:
    two = settings.model_copy(update={"completions_dir": tmp_path, "workers": 2, "pool_min": 0, "pool_max": 2, "port": 0})
    requests = 60
    with ServiceProcess(two, tmp_path / "server.log") as server:
        log = CompletionLog(tmp_path)
        deadline = time.monotonic() + 10
        while len(log.paths()) < 2 and time.monotonic() < deadline:  # the second worker may start a moment later
            time.sleep(0.05)
        mark = log.snapshot()

        def get(_: int) -> int:
            # A new connection each, and a route that holds its worker's loop: the other worker accepts the next.
            return httpx.get(f"{server.url}/bench/wait/async-blocking/time?seconds=0.02").status_code

        with ThreadPoolExecutor(4) as threads:
            statuses = list(threads.map(get, range(requests)))
        now = settled(log, ok=mark.ok + requests)
        times = log.since(mark)
    assert statuses == [200] * requests
    assert len(now.files) == 2 and len(times) == requests == now.ok - mark.ok
    assert all(now.files[name].ok > mark.files[name].ok for name in now.files), now.files


def test_no_directory_no_middleware(tmp_path: Path) -> None:
    def middleware(settings: Settings) -> list[object]:
        return [entry.cls for entry in create_app(settings).user_middleware]

    assert CompletionRecorder not in middleware(Settings(_env_file=None))
    assert middleware(Settings(_env_file=None, completions_dir=tmp_path))[0] == CompletionRecorder, "the outermost"
    assert [path.name for path in tmp_path.iterdir()] == [file_name(os.getpid())]
