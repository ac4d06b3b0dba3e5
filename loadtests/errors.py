"""The harness's errors and the exit codes the CLI turns them into.

Exit codes of ``iobench-load``:

- 0: every required finding passed;
- 1: a required finding failed;
- 2: usage error (bad option, unknown name): nothing was started;
- 3: the environment or the service failed (ab missing or broken, the database could not be
  prepared, the service did not start or died): the report keeps what was measured;
- 4: inconclusive: a required finding stayed inconclusive after its extra rounds, or was not
  measured in this run;
- 130 / 143: interrupted by Ctrl-C (SIGINT) / SIGTERM: the partial report is written.
"""

from __future__ import annotations

import signal

EXIT_PASS = 0
EXIT_FINDING_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INCONCLUSIVE = 4
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class HarnessError(Exception):
    """Base of every error the harness reports to its user; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_ENVIRONMENT


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, a CI timeout): stop like Ctrl-C, keeping what was measured."""


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()
