"""The work Postgres did for one database, from the server's own books: transactions, new
sessions and the CPU time of the backends serving it.

Usage::

    with ServerStats(url) as stats:                  # url: the database being measured
        before = stats.snapshot()
        ...                                          # the load
        during = stats.snapshot()                    # backends still alive: their CPU
        ...                                          # stop the pools (or wait FLUSH_DELAY_S)
        after = stats.settled()
    work = work_between(before, after, cpu_until=during)
    work.per(requests).transactions

Where the numbers come from, and what to mind (PostgreSQL 15):

- ``pg_stat_database`` (``xact_commit``, ``xact_rollback``, ``sessions``), read from a
  connection of our own to another database of the server (``monitor_database``), in
  autocommit, so our reads are neither counted nor held in a cached snapshot.
- Counters arrive late. A backend pushes its counts when it goes idle, at most once a second;
  what is left waits for a 10 s idle timer, and a backend that ran only table-free statements
  (``SELECT pg_sleep(...)``) keeps its counts until it exits. Closing the pools flushes
  everything; otherwise wait ``FLUSH_DELAY_S`` after the load, and expect table-free work to be
  missing. ``settled()`` waits for the counters to stop moving.
- Other sessions on the same database count too (an autovacuum worker visits every database
  now and then), and every new session adds one commit of its own (backend start-up reads the
  catalogs in a transaction): compare against a run without the work to measure, or repeat.
- CPU: the client backends of the database (``pg_stat_activity``, optionally only those whose
  ``application_name`` matches), each one's time on a CPU from ``/proc/<pid>/schedstat``
  (nanoseconds, kept by the scheduler). Where the kernel has no schedstat, ``utime + stime`` from
  ``/proc/<pid>/stat`` over ``CLK_TCK``: sampled at the timer tick (10 ms), which charges a whole
  tick to whatever runs at the interrupt, so forty backends doing a millisecond each mostly read 0
  (``CPU_CLOCK`` says which is used). Only for a server on this machine: elsewhere ``cpu`` is None.
  A backend that exits between two snapshots takes its CPU with it (``ServerWork.backends_gone``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from db.url import libpq_url, with_database

#: PGSTAT_IDLE_INTERVAL (10 s) plus a margin: after this long idle, a backend has pushed its counts
#: (unless it ran only table-free statements, which it keeps until it exits).
FLUSH_DELAY_S = 11.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")
#: How a backend's CPU time is read here: "schedstat" (ns) or "ticks" (CLK_TCK, statistical).
CPU_CLOCK = "schedstat" if (_PROC / "self" / "schedstat").exists() else "ticks"


@dataclass(frozen=True)
class Counters:
    """``pg_stat_database`` for one database: transactions committed and rolled back, sessions begun."""

    commits: int
    rollbacks: int
    sessions: int


@dataclass(frozen=True)
class Snapshot:
    """The database's counters and, where readable, each client backend's CPU seconds so far, by pid."""

    at: float  # time.monotonic()
    counters: Counters
    cpu: dict[int, float] | None


@dataclass(frozen=True)
class WorkPerRequest:
    """``ServerWork`` divided by the requests that did it."""

    transactions: float
    commits: float
    rollbacks: float
    sessions: float  # new server sessions per request: above 0 is connection churn
    cpu_ms: float | None


@dataclass(frozen=True)
class ServerWork:
    """What Postgres did for the database between two snapshots."""

    seconds: float
    commits: int
    rollbacks: int
    sessions: int
    cpu_s: float | None
    backends: int | None  # client backends whose CPU is counted
    backends_gone: int | None  # seen before, gone at the end: their CPU since ``before`` is missing

    @property
    def transactions(self) -> int:
        return self.commits + self.rollbacks

    def per(self, requests: int) -> WorkPerRequest:
        if requests <= 0:
            raise ValueError(f"requests must be positive, got {requests}")
        return WorkPerRequest(
            transactions=self.transactions / requests,
            commits=self.commits / requests,
            rollbacks=self.rollbacks / requests,
            sessions=self.sessions / requests,
            cpu_ms=None if self.cpu_s is None else self.cpu_s * 1000 / requests,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "commits": self.commits, "rollbacks": self.rollbacks,
                "transactions": self.transactions, "sessions": self.sessions, "cpu_s": self.cpu_s,
                "backends": self.backends, "backends_gone": self.backends_gone}


def work_between(before: Snapshot, after: Snapshot, *, cpu_until: Snapshot | None = None) -> ServerWork:
    """The counters from ``before`` to ``after``; CPU up to ``cpu_until`` (default ``after``), the
    last snapshot taken while the backends still ran, since closing a pool ends them."""
    end = cpu_until or after
    cpu_s = backends = gone = None
    if before.cpu is not None and end.cpu is not None:
        # A backend that started after ``before`` counts whole: its CPU is all within the interval.
        cpu_s = sum(seconds - before.cpu.get(pid, 0.0) for pid, seconds in end.cpu.items())
        backends = len(end.cpu)
        gone = len(before.cpu.keys() - end.cpu.keys())
    return ServerWork(
        seconds=after.at - before.at,
        commits=after.counters.commits - before.counters.commits,
        rollbacks=after.counters.rollbacks - before.counters.rollbacks,
        sessions=after.counters.sessions - before.counters.sessions,
        cpu_s=cpu_s,
        backends=backends,
        backends_gone=gone,
    )


def backend_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of the Postgres process ``pid`` on this machine, or None if there is
    no such Postgres process here (it exited, or the server runs elsewhere)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
    name = stat[stat.find("(") + 1: stat.rfind(")")]
    if name != "postgres":
        return None
    if CPU_CLOCK == "schedstat":
        try:
            # sched-stats.rst: time spent on the cpu (ns), time waiting on a runqueue, timeslices run.
            return int((_PROC / str(pid) / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            return None
    fields = stat[stat.rfind(")") + 2:].split()
    # fields[0] is field 3 (state) of proc_pid_stat(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_SNAPSHOT = """
SELECT d.xact_commit, d.xact_rollback, d.sessions,
       ARRAY(SELECT a.pid FROM pg_stat_activity AS a
             WHERE a.datid = d.datid AND a.backend_type = 'client backend'
               AND (%(application)s::text IS NULL OR a.application_name LIKE %(application)s)) AS pids
FROM pg_stat_database AS d WHERE d.datname = %(database)s
"""


class ServerStats:
    """Snapshots of one database's server-side work, over a monitoring connection of its own.

    ``url`` names the database measured; the monitor connects to ``monitor_database`` on the same
    server (the maintenance database ``postgres`` by default) so that its own reads never count.
    ``application`` (a LIKE pattern, e.g. ``"iobench-%"``) limits the CPU to those backends.
    """

    def __init__(self, url: str, *, application: str | None = None, monitor_database: str = "postgres",
                 connect_timeout: int = 5) -> None:
        import psycopg  # here, not at import: the harness reads the catalogue without loading drivers
        from psycopg.conninfo import conninfo_to_dict

        self.database = str(conninfo_to_dict(libpq_url(url))["dbname"])
        self.application = application
        self._connection = psycopg.connect(with_database(libpq_url(url), monitor_database), autocommit=True,
                                           connect_timeout=connect_timeout, application_name="iobench-server-stats")

    def snapshot(self) -> Snapshot:
        """The counters now (one statement, in autocommit: a fresh read) and each backend's CPU."""
        row = self._connection.execute(_SNAPSHOT, {"database": self.database, "application": self.application}).fetchone()
        if row is None:
            raise LookupError(f"no database {self.database!r} in pg_stat_database")
        commits, rollbacks, sessions, pids = row
        cpu: dict[int, float] = {}
        local = bool(pids) or _PROC.exists()
        for pid in pids:
            seconds = backend_cpu_seconds(pid)
            if seconds is None:
                if (_PROC / str(pid)).exists():  # a process, but not a Postgres of this machine
                    local = False
                    break
                continue  # exited since the query
            cpu[pid] = seconds
        return Snapshot(time.monotonic(), Counters(commits, rollbacks, sessions), cpu if local else None)

    def backends(self) -> int:
        """Client backends connected to the database now (of ``application``, if given)."""
        snapshot = self._connection.execute(_SNAPSHOT, {"database": self.database, "application": self.application}).fetchone()
        return len(snapshot[3]) if snapshot else 0

    def wait_until_no_backends(self, timeout: float = 5.0, every: float = 0.05) -> bool:
        """Wait until the database has no client backends (of ``application``) left: after a pool
        closed, its backends exit, and exiting pushes their counts. False on timeout."""
        deadline = time.monotonic() + timeout
        while self.backends():
            if time.monotonic() >= deadline:
                return False
            time.sleep(every)
        return True

    def settled(self, *, quiet: float = 0.3, timeout: float = FLUSH_DELAY_S + 2, every: float = 0.1) -> Snapshot:
        """A snapshot once the counters have stopped moving for ``quiet`` seconds (or at ``timeout``).

        After the pools closed, that is when the exiting backends' counts are in. After an idle
        wait without closing, pass ``quiet`` above the 10 s idle flush, or wait ``FLUSH_DELAY_S`` first.
        """
        deadline = time.monotonic() + timeout
        last = self.snapshot()
        still_since = last.at
        while time.monotonic() < deadline:
            time.sleep(every)
            current = self.snapshot()
            if current.counters != last.counters:
                still_since = current.at
            elif current.at - still_since >= quiet:
                return current
            last = current
        return last

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
