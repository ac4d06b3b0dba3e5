"""``python -m db.pgbouncer --parent-pid PID -- pgbouncer [-u USER] FILE``: PgBouncer on a lifeline.

PgBouncer cannot watch the process that started it, and the kernel's parent-death signal
(``PR_SET_PDEATHSIG``) is cleared when it switches user (``-u``, which it needs under root).
So this small supervisor runs it as a child: it prints one JSON line to stdout, ``{"pid": N}``
(PgBouncer's pid), and stops PgBouncer (SIGTERM: it closes every link at once) when PID is gone,
checked twice a second, or when it gets SIGTERM or SIGINT itself. It exits with PgBouncer's
status. PgBouncer's output goes where this process's stderr goes (its log). ``--orphan-cleanup
DIR`` removes DIR (the generated config) once PgBouncer is stopped because PID is gone: nobody
else is left to.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from types import FrameType

#: How often the parent is looked for, in seconds.
PARENT_CHECK_INTERVAL = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m db.pgbouncer", description=__doc__.splitlines()[0])
    parser.add_argument("--parent-pid", type=int, required=True, help="stop PgBouncer when this process is gone")
    parser.add_argument("--orphan-cleanup", default=None, help="a folder to remove once PgBouncer is stopped because the parent is gone")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the pgbouncer command line")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("give the pgbouncer command after --")
    return args


def supervise(command: list[str], parent_pid: int, orphan_cleanup: str | None = None) -> int:
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno())
    print(json.dumps({"pid": child.pid}), flush=True)

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    orphaned = False
    while True:
        try:
            code = child.wait(PARENT_CHECK_INTERVAL)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != parent_pid:  # reparented: whoever started us is gone
                orphaned = True
                forward(signal.SIGTERM, None)
    if orphaned and orphan_cleanup:
        shutil.rmtree(orphan_cleanup, ignore_errors=True)
    return code


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    code = supervise(args.command, args.parent_pid, args.orphan_cleanup)
    # A child killed by a signal reports -N; exit 128 + N like a shell.
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
