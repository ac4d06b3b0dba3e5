"""The completion log: when each successful response left the service, per worker process.

ab's own rate counts its start-up (it sends the first request alone, then opens its other
connections) and the last wave, which drains part-empty; its ``-g`` file has only whole-second
start times. So the service notes the ``time.monotonic_ns()`` of every 2xx response it finishes
sending, in a memory-mapped file per worker that a harness reads at any moment, even while a
blocking route holds the event loop, and counts only what completed in a steady window.
``time.monotonic_ns()`` is CLOCK_MONOTONIC, one clock for every process on the machine, so the
harness compares these times with its own.

File ``<dir>/completions-<pid>.bin``, one per worker process, created when ``create_app`` runs in
it (uvicorn ``--factory --workers N`` calls it in each worker); little-endian::

    offset 0    8 bytes   magic and version, b"IOBCMP01"
    offset 8    u64       capacity: the number of slots
    offset 16   u64       ok: 2xx completions so far
    offset 24   u64       other: every other completion (4xx, 5xx, a response cut short)
    offset 32   capacity x 16-byte slots: the k-th 2xx completion (from 0) in slot k % capacity,
                as u64 CLOCK_MONOTONIC nanoseconds and the u64 ``route_key`` of its path

The route key lets a harness count one route's completions in a window, whatever else the
service was still finishing (what a stopped ab left in flight on another route).

A completion's time is read just after the server took its last body bytes (uvicorn's transport
write), so a client may hold the response a moment before the count moves (microseconds; longer
while the loop is busy).

The slot is written before ``ok`` counts it, so a reader that reads ``ok == k`` knows the slots
of completions before k are written (x86-64 keeps one core's stores in order; the reader reads
each header twice until the two agree, so a torn read is never used). The file is created under
another name and renamed into place, so a reader never sees it half made. One writer per file:
the middleware runs on its worker's event loop.

Cost: ``CompletionRecorder`` around a trivial ASGI app that sends a start and a body, best of
7 x 100,000 calls in one event loop on the 2-core test machine: 2.1 µs per request against
0.4-0.6 µs for the bare app, so 1.5-1.8 µs added (the closure, one more await per message, the
clock and two stores), against a lookup route's 0.5-2 ms of service CPU: 0.1-0.3 %. Without
``completions_dir`` there is no middleware at all.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAGIC = b"IOBCMP02"
HEADER = struct.Struct("<8sQQQ")  # magic, capacity, ok, other
SLOT = struct.Struct("<QQ")  # monotonic ns, route key
COUNT = struct.Struct("<Q")
_OK_AT, _OTHER_AT = 16, 24
#: 2 MiB of slots: seconds of load at thousands of requests a second, between two reads.
DEFAULT_CAPACITY = 131072
#: Requests that are not load: the readiness and event-loop probe.
UNRECORDED_PATHS = frozenset({"/ping"})


def file_name(pid: int) -> str:
    return f"completions-{pid}.bin"


def route_key(path: str) -> int:
    """The key a completion of ``path`` (the URL path, without its query) is recorded under."""
    return zlib.crc32(path.encode())


FILE_PATTERN = "completions-*.bin"


class CompletionLogError(Exception):
    """A completion file cannot be read as this module writes it."""


class CompletionLogOverflow(CompletionLogError):
    """More completions than a file's capacity happened since the mark: their slots were overwritten."""


# --- writer ---------------------------------------------------------------------------------------


class CompletionWriter:
    """This process's completion file, open for writing (one writer: its event loop)."""

    def __init__(self, directory: Path, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / file_name(os.getpid())
        self.capacity = capacity
        self._ok = self._other = 0
        building = directory / f".{self.path.name}.new"
        fd = os.open(building, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, HEADER.size + capacity * SLOT.size)
            self._map = mmap.mmap(fd, 0)  # shared: what it writes is what readers' maps see
        finally:
            os.close(fd)
        HEADER.pack_into(self._map, 0, MAGIC, capacity, 0, 0)
        os.replace(building, self.path)

    def ok(self, monotonic_ns: int, route: int = 0) -> None:
        """Record a 2xx completion of route ``route``: its slot first, then the count that publishes it."""
        k = self._ok
        SLOT.pack_into(self._map, HEADER.size + (k % self.capacity) * SLOT.size, monotonic_ns, route)
        self._ok = k + 1
        COUNT.pack_into(self._map, _OK_AT, self._ok)

    def other(self) -> None:
        self._other += 1
        COUNT.pack_into(self._map, _OTHER_AT, self._other)


class CompletionRecorder:
    """Pure ASGI middleware (no per-request objects beyond a closure): notes each HTTP response's
    status and, once its last body message is sent, records it in ``writer``; /ping is not recorded.

    A request that raises before its response is sent (the server then answers 500 from outside
    this middleware) or whose client leaves mid-response counts as ``other``.
    """

    def __init__(self, app: ASGIApp, writer: CompletionWriter) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNRECORDED_PATHS:
            await self.app(scope, receive, send)
            return
        writer = self.writer
        status = 0  # 0: no response yet; -1: recorded

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False) and status > 0:
                if 200 <= status < 300:
                    writer.ok(time.monotonic_ns(), route_key(scope["path"]))
                else:
                    writer.other()
                status = -1

        try:
            await self.app(scope, receive, recording_send)
        except BaseException:
            if status != -1:
                writer.other()
            raise


# --- reader ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """One worker file's completions so far."""

    ok: int
    other: int


@dataclass(frozen=True)
class Mark:
    """Every worker file's counts at one moment (by file name), and their sums."""

    files: dict[str, Counts]

    @property
    def ok(self) -> int:
        return sum(counts.ok for counts in self.files.values())

    @property
    def other(self) -> int:
        return sum(counts.other for counts in self.files.values())


class CompletionLog:
    """The completion files of a service's workers in ``directory``, read while they are written."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def paths(self) -> list[Path]:
        return sorted(self.directory.glob(FILE_PATTERN))

    def snapshot(self) -> Mark:
        """The counts of every worker file now."""
        files = {}
        for path in self.paths():
            with _mapped(path) as data:
                _, ok, other = _header(data, path)
            files[path.name] = Counts(ok, other)
        return Mark(files)

    def since(self, mark: Mark, path: str | None = None) -> list[int]:
        """Sorted CLOCK_MONOTONIC nanoseconds of every 2xx completion after ``mark`` (of ``path`` only, if given)."""
        wanted = None if path is None else route_key(path)
        return [ns for ns, route in self.entries_since(mark) if wanted is None or route == wanted]

    def entries_since(self, mark: Mark) -> list[tuple[int, int]]:
        """(CLOCK_MONOTONIC nanoseconds, route key) of every 2xx completion after ``mark``, in time order, across
        every worker file (one that appeared after the mark counts from 0). Raises ``CompletionLogOverflow``
        if a file saw more than its capacity since the mark."""
        times: list[tuple[int, int]] = []
        for path in self.paths():
            start = mark.files.get(path.name, Counts(0, 0)).ok
            with _mapped(path) as data:
                capacity, end, _ = _header(data, path)
                if end < start:
                    raise CompletionLogError(f"{path}: {end} completions, fewer than the mark's {start}: a new process?")
                _check_room(path, start, end, capacity)
                times += _slots(data, start, end, capacity)
                _check_room(path, start, _header(data, path)[1], capacity)  # none overwritten while read
        return sorted(times)


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap]:
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        yield data


def _header(data: mmap.mmap, path: Path) -> tuple[int, int, int]:
    """Capacity, ok and other, read until two reads agree (a torn read is never used)."""
    first = HEADER.unpack_from(data, 0)
    while (second := HEADER.unpack_from(data, 0)) != first:
        first = second
    magic, capacity, ok, other = first
    if magic != MAGIC or len(data) != HEADER.size + capacity * SLOT.size:
        raise CompletionLogError(f"{path} is not a completion file of this version ({magic!r}, {len(data)} bytes)")
    return capacity, ok, other


def _check_room(path: Path, start: int, end: int, capacity: int) -> None:
    if end - start > capacity:
        raise CompletionLogOverflow(
            f"{path}: {end - start} completions since the mark, more than its {capacity} slots; read more often")


def _slots(data: mmap.mmap, start: int, end: int, capacity: int) -> list[tuple[int, int]]:
    """The slots of completions start..end-1, in order (at most two runs: the ring may wrap)."""
    values: list[tuple[int, int]] = []
    k = start
    while k < end:
        first = k % capacity
        run = min(end - k, capacity - first)
        flat = struct.unpack_from(f"<{2 * run}Q", data, HEADER.size + first * SLOT.size)
        values += zip(flat[0::2], flat[1::2], strict=True)
        k += run
    return values
