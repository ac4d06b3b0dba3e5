"""The Locust side of ``--engine locust``: one user class built from the catalogue, a master the harness steers, workers.

Runs only in processes of its own (``python -m loadtests.swarm master|worker``, which ``iobench-load worker``
starts): importing Locust monkey-patches the standard library for gevent, and the harness (threads, subprocesses,
psycopg) must not get that.

- **The user.** ``case_user`` builds one ``FastHttpUser`` class whose task requests the case the master names,
  with no wait between requests (``constant(0)``): each user is one closed-loop client, as each of ab's ``-c``
  clients is, and c users are c clients. Without keep-alive (ab's default) each request asks ``Connection: close``.
  A worker only requests a route of the catalogue on this machine (``ab.normalise_target``, ``catalogue_paths``).
- **The master** reads one JSON command a line on stdin and answers one JSON line on stdout: ``wait`` (for N
  workers), ``start`` (a case at c users), ``stop`` (then each worker's last Locust report, and the master's stats,
  where Locust pooled every worker's), ``quit``. A worker that went missing or quit since ``start`` is named in ``stop``'s answer.
- **A worker** connects to the master (``create_worker_runner``), answers its ``iobench_target`` and
  ``iobench_report`` messages, and quits with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Every spawn message waits this long at most for the workers to report their users (Locust's default: 1 s).
os.environ.setdefault("LOCUST_WAIT_FOR_WORKERS_REPORT_AFTER_RAMP_UP", "0.5")

import gevent  # noqa: E402 - after the environment above; Locust's import patches the standard library
import psutil  # noqa: E402
from gevent.fileobject import FileObjectPosix  # noqa: E402
from locust import FastHttpUser, constant, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner  # noqa: E402

from app.catalogue import SCENARIOS  # noqa: E402
from loadtests.ab import normalise_target  # noqa: E402

#: Seconds a command waits for every worker to be ready (local ones connect within a second or two).
READY_S = 30.0
#: Seconds ``stop`` waits for every worker's report.
REPORT_S = 10.0
DEFAULT_PORT = 5557


def catalogue_paths() -> frozenset[str]:
    """Every path the service serves from the catalogue: the only ones a worker will request."""
    return frozenset(scenario.path for scenario in SCENARIOS)


@dataclass
class Target:
    """The case the workers' users request: the service's base URL and the path with its query."""

    base: str = "http://127.0.0.1"
    path: str = "/"
    keepalive: bool = False

    def aim(self, url: str, keepalive: bool) -> None:
        """Aim at ``url``; ValueError for a host not on this machine or a path that is not the catalogue's."""
        checked = normalise_target(url)
        parts = urlsplit(checked)
        if parts.path not in catalogue_paths():
            raise ValueError(f"{parts.path} is not a route of the catalogue")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.keepalive = keepalive


def case_user(target: Target) -> type[FastHttpUser]:
    """The one user class: a closed-loop client of the case ``target`` names."""

    class CaseUser(FastHttpUser):
        """One of the case's c clients: a request, its answer, the next request, no wait (``constant(0)``)."""

        host = target.base
        wait_time = constant(0)
        # One connection per user, as one ab client has; a failed request is counted, never retried.
        concurrency = 1
        max_retries = 0

        @task
        def request(self) -> None:
            headers = None if target.keepalive else {"Connection": "close"}
            self.client.get(target.path, name="case", headers=headers)

    return CaseUser


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.02)
    return True


class Master:
    """A Locust master steered line by line (see the module docstring)."""

    def __init__(self, bind: str, port: int) -> None:
        self.environment = Environment(user_classes=[case_user(Target())], events=events)
        self.runner: MasterRunner = self.environment.create_master_runner(bind, port)
        self.reports: dict[str, dict[str, Any]] = {}
        self.running: set[str] = set()
        self.runner.register_message("iobench_stats", self._report)
        self.runner.register_message("iobench_refused", self._refused)
        self.refused: list[str] = []

    def _report(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.reports[msg.node_id] = msg.data

    def _refused(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.refused.append(f"{msg.node_id}: {msg.data['error']}")

    def ready(self) -> list[str]:
        return [client.id for client in self.runner.clients.ready]

    def wait(self, workers: int, timeout_s: float) -> dict[str, Any]:
        if not _until(lambda: len(self.ready()) >= workers, timeout_s):
            return {"ok": False, "error": f"{len(self.ready())} of {workers} Locust workers connected within {timeout_s:g} s"}
        return {"ok": True, "workers": len(self.ready())}

    def start(self, url: str, users: int, keepalive: bool, workers: int) -> dict[str, Any]:
        if not _until(lambda: len(self.ready()) >= workers, READY_S):
            return {"ok": False, "lost": True,
                    "error": f"{len(self.ready())} of {workers} Locust workers ready before the sample"}
        self.refused.clear()
        self.runner.send_message("iobench_target", {"url": url, "keepalive": keepalive})
        self.running = set(self.ready())
        # Every user at once: the harness's warm-up starts when they all run.
        self.runner.start(users, spawn_rate=max(1.0, float(users) * 100))
        if self.refused:
            self.runner.stop()
            return {"ok": False, "error": "; ".join(self.refused)}
        return {"ok": True, "workers": sorted(self.running)}

    def missing(self) -> set[str]:
        return {c.id for c in self.runner.clients.all if c.state == STATE_MISSING}

    def stop(self, workers: int) -> dict[str, Any]:
        self.runner.stop()  # returns once every worker stopped its users, or went missing (no heartbeat for 3 s)
        self.reports.clear()
        # A stopped worker says it is ready again; then it answers the report request.
        _until(lambda: self.running <= set(self.ready()) | self.missing(), REPORT_S)
        self.runner.send_message("iobench_report")
        present = set(self.ready()) & self.running
        _until(lambda: set(self.reports) >= present, REPORT_S)
        lost = sorted((self.running - set(self.reports)) | (self.missing() & self.running))
        # Every worker's requests, pooled by Locust as they arrived (its "stats" messages): counts summed,
        # response-time histograms merged.
        total = self.environment.stats.total
        cpu_usage = {c.id: c.cpu_usage for c in self.runner.clients.all}
        return {
            "ok": True, "lost": lost, "requests": total.num_requests, "failures": total.num_failures,
            "mean_ms": total.avg_response_time if total.num_requests else None,
            "p50_ms": total.get_response_time_percentile(0.5) if total.num_requests else None,
            "p90_ms": total.get_response_time_percentile(0.9) if total.num_requests else None,
            "p99_ms": total.get_response_time_percentile(0.99) if total.num_requests else None,
            "max_ms": total.max_response_time if total.num_requests else None,
            "workers": {node: {"pid": r.get("pid"), "host": r.get("host"), "cpu_usage": cpu_usage.get(node)}
                        for node, r in self.reports.items()},
        }

    def serve(self) -> None:
        """Commands from stdin until ``quit`` or its end."""
        commands = FileObjectPosix(sys.stdin.fileno(), "r", close=False)
        _emit({"ok": True, "listening": True})
        for line in commands:
            command = json.loads(line)
            name = command.get("cmd")
            try:
                if name == "wait":
                    _emit(self.wait(int(command["workers"]), float(command.get("timeout", READY_S))))
                elif name == "start":
                    _emit(self.start(str(command["url"]), int(command["users"]), bool(command.get("keepalive")),
                                     int(command["workers"])))
                elif name == "stop":
                    _emit(self.stop(int(command["workers"])))
                elif name == "quit":
                    break
                else:
                    _emit({"ok": False, "error": f"unknown command {name!r}"})
            except Exception as exc:  # noqa: BLE001 - the harness gets the error as an answer, the master stays up
                _emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        self.runner.quit()


def worker(master_host: str, master_port: int) -> None:
    """A Locust worker of the iobench master at ``master_host``: runs until the master quits."""
    target = Target()
    environment = Environment(user_classes=[case_user(target)], events=events)
    runner: WorkerRunner = environment.create_worker_runner(master_host, master_port)
    process = psutil.Process()

    def aim(environment: Environment, msg: Any, **_: Any) -> None:
        try:
            target.aim(str(msg.data["url"]), bool(msg.data.get("keepalive")))
        except ValueError as exc:
            runner.send_message("iobench_refused", {"error": str(exc)})
            return
        for user_class in environment.user_classes:
            user_class.host = target.base

    def report(environment: Environment, msg: Any, **_: Any) -> None:
        # Locust's own report to the master (what its stats reporter sends every 3 s, which clears the worker's
        # stats): the master pools it into its stats before it reads this worker's answer, sent after it.
        data: dict[str, Any] = {}
        environment.events.report_to_master.fire(client_id=runner.client_id, data=data)  # type: ignore[no-untyped-call]
        runner.send_message("stats", data)
        times = process.cpu_times()
        runner.send_message("iobench_stats", {"pid": os.getpid(), "host": os.uname().nodename,
                                              "cpu_s": times.user + times.system})

    runner.register_message("iobench_target", aim)
    runner.register_message("iobench_report", report)
    runner.greenlet.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.swarm", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="role", required=True)
    master_args = commands.add_parser("master")
    master_args.add_argument("--bind", default="127.0.0.1")
    master_args.add_argument("--port", type=int, default=DEFAULT_PORT)
    worker_args = commands.add_parser("worker")
    worker_args.add_argument("--master", required=True)
    worker_args.add_argument("--master-port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    if args.role == "master":
        Master(args.bind, args.port).serve()
    else:
        worker(args.master, args.master_port)


if __name__ == "__main__":
    main()
