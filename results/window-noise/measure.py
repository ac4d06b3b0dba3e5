"""How a route's steady rate varies with the window it is counted over, on one long ab run.

Starts ``iobench serve --like default`` with a completion log, fills the pools with 3 s of ab, then
drives ``ab -c 40 -t SECONDS`` at each route in turn and cuts its completions (``app.completions``)
into back-to-back windows of 0.1, 0.3, 1 and 3 s. If a route's rate only jittered from one moment to
the next, the spread of log(rate) would fall as 1/sqrt(window): sd x sqrt(window) would stay flat.
Where it grows, the rate wanders over seconds, and a longer window buys little.

Run from the project root: ``.venv/bin/python results/window-noise/measure.py [SECONDS]``.
"""

from __future__ import annotations

import bisect
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.completions import CompletionLog

ROUTES = ("lookup/sync/psycopg2", "lookup/async/asyncpg", "write/sync/psycopg2", "write/async/asyncpg",
          "wait/sync/time?seconds=0.05")
WINDOWS_S = (0.1, 0.3, 1.0, 3.0)
PORT = 8012


def rates(times_ns: list[int], window_s: float) -> list[float]:
    """Completions per second in back-to-back windows, from 1 s after the first completion to 0.5 s before the last."""
    start, end, step = times_ns[0] + 1e9, times_ns[-1] - 0.5e9, window_s * 1e9
    found = []
    while start + step <= end:
        found.append((bisect.bisect(times_ns, start + step) - bisect.bisect(times_ns, start)) / window_s)
        start += step
    return found


def main(seconds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="iobench-window-noise-"))
    env = {**os.environ, "IOBENCH_COMPLETIONS_DIR": str(folder)}
    server = subprocess.Popen([".venv/bin/iobench", "serve", "--like", "default", "--port", str(PORT)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{PORT}/ping", timeout=1.0)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        log = CompletionLog(folder)
        print(f"ab -c 40 -t {seconds} per route, on `iobench serve --like default`")
        print("| route | completions | rate | " + " | ".join(f"sd of log rate, {w:g} s windows (x sqrt(s))" for w in WINDOWS_S) + " |")
        print("|---|---:|---:|" + "---:|" * len(WINDOWS_S))
        for route in ROUTES:
            url = f"http://127.0.0.1:{PORT}/bench/{route}"
            subprocess.run(["ab", "-q", "-t", "3", "-n", "1000000", "-c", "40", url], capture_output=True, check=True)
            mark = log.snapshot()
            subprocess.run(["ab", "-q", "-t", str(seconds), "-n", "1000000", "-c", "40", url], capture_output=True,
                           check=True)
            times = [ns for ns, _ in log.entries_since(mark)]
            cells = []
            for window in WINDOWS_S:
                logs = [math.log(r) for r in rates(times, window) if r > 0]
                sd = statistics.stdev(logs)
                cells.append(f"{sd:.3f} ({sd * math.sqrt(window):.3f})")
            rate = len(times) / ((times[-1] - times[0]) / 1e9)
            print(f"| `{route}` | {len(times)} | {rate:,.0f} | " + " | ".join(cells) + " |")
            print(f"  0.5 s rates: {[round(r) for r in rates(times, 0.5)]}", file=sys.stderr)
    finally:
        os.killpg(server.pid, 15)
        server.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
