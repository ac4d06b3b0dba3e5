"""The catalogue is data, db/ stands below app/, and a driver is added in one place.

Adding a driver is tried for real: the code is copied to a scratch folder, one entry is added to
``DRIVERS`` there and one driver module beside it, and a fresh interpreter shows that routes,
``/scenarios``, ``/config``, the load-test plan and the README table all follow. Nothing is
patched in this process, so no test sees a catalogue other than the real one.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.catalogue import DATABASE_WORKLOADS, DRIVERS, DRIVERS_BY_NAME, LOOKUP, MINIMAL_WORKLOADS, WRITE
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "db", "loadtests", "migrations")
DRIVER_LIBRARIES = ("asyncpg", "psycopg", "psycopg2", "psycopg_pool", "sqlalchemy", "aiofiles")


def imported_modules(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code`` in this checkout."""
    script = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_db_imports_nothing_from_app() -> None:
    offenders = []
    for path in sorted((ROOT / "db").rglob("*.py")) + [ROOT / "migrations" / "env.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] in ("app", "loadtests")]
    assert not offenders, offenders


def test_db_loads_without_fastapi_or_pydantic_settings() -> None:
    modules = imported_modules(
        "import db.bootstrap, db.seed, db.migrate, db.url, db.embedded, db.server_stats\n"
        "import db.drivers.asyncpg, db.drivers.psycopg2, db.drivers.psycopg3, db.drivers.sqlalchemy"
    )
    assert not {"fastapi", "pydantic_settings", "app"} & modules


def test_reading_the_catalogue_loads_no_driver_library() -> None:
    """The load tests and `iobench scenarios` read the catalogue; only the service needs the drivers."""
    modules = imported_modules("import app.catalogue, loadtests.profiles, loadtests.model")
    assert not set(DRIVER_LIBRARIES) & modules


FAKE_ENTRY = """\
    Driver("fake-pooled", Kind.ASYNC, DATABASE_WORKLOADS, "fake_driver:FakeDatabase",
           "asyncpg under another name (tests/test_catalogue.py)", pooled=True, distributions=("asyncpg",)),
"""

CHECK = """\
import json, sys
import app.catalogue
assert app.catalogue.__file__.startswith(sys.argv[1]), app.catalogue.__file__
from fastapi.testclient import TestClient
from app.catalogue import markdown_table
from app.main import create_app
from app.settings import Settings
from loadtests.profiles import PROFILES

with TestClient(create_app(Settings(pool_min=1, pool_max=2))) as client:
    scenarios = client.get("/scenarios").json()
    answers = {
        s["id"]: client.get(s["path"], params={"seconds": 0} if "seconds" in s["parameters"] else {}).status_code
        for s in scenarios["scenarios"] if s["driver"] == "fake-pooled"
    }
    facts = {
        "routes": sorted(client.get("/openapi.json").json()["paths"]),
        "scenarios": [s["id"] for s in scenarios["scenarios"]],
        "drivers": [d["name"] for d in scenarios["drivers"]],
        "pools": sorted(client.get("/config").json()["pools"]),
        "answers": answers,
        "plan": [case.key for case in PROFILES["default"].cases()],
        "table": markdown_table(),
    }
print(json.dumps(facts))
"""


@pytest.mark.postgres
def test_a_new_driver_is_one_catalogue_entry_and_one_module(settings: Settings, tmp_path: Path) -> None:
    copy = tmp_path / "iobench"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    catalogue = copy / "app" / "catalogue.py"
    anchor = "DRIVERS: tuple[Driver, ...] = (\n"
    source = catalogue.read_text()
    assert source.count(anchor) == 1
    catalogue.write_text(source.replace(anchor, anchor + FAKE_ENTRY))
    shutil.copy(ROOT / "tests" / "fake_driver.py", copy / "fake_driver.py")

    env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(copy)}
    result = subprocess.run([sys.executable, "-c", CHECK, str(copy)], cwd=copy, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.splitlines()[-1])

    added = {f"{workload.name}/{style}/fake-pooled" for workload in DATABASE_WORKLOADS for style in ("async", "minimal")
             if style == "async" or workload in MINIMAL_WORKLOADS}
    assert "fake-pooled" in facts["drivers"] and "fake-pooled" in facts["pools"]
    assert added <= set(facts["scenarios"])
    assert {f"/bench/{scenario}" for scenario in added} <= set(facts["routes"])
    assert facts["answers"] == dict.fromkeys(added, 200)
    assert added <= {key.split("[")[0] for key in facts["plan"]}
    assert all(f"| `{scenario}` |" in facts["table"] for scenario in added)
    print(textwrap.shorten(f"added {sorted(added)}", 200))


# --- what each Postgres driver is set to ------------------------------------------------------


def test_every_postgres_driver_says_what_was_set_and_why() -> None:
    for driver in (d for d in DRIVERS if d.pooled):
        assert driver.setup is not None, driver.name
        assert driver.setup.summary and driver.setup.docs, driver.name
        assert all(url.startswith("https://") for url in driver.setup.docs), driver.name
        assert driver.setup.read.count("query") == 1 and driver.setup.write.count("query") == 1, driver.name


def test_equal_work_is_one_statement_per_read_and_one_transaction_per_write() -> None:
    """Every driver's equal-work setup sends the same statements, but for the one documented
    exception: psycopg2's SET default_transaction_isolation under SQLAlchemy's sync engine."""
    exceptions = {"sqlalchemy-sync": ("SET default_transaction_isolation TO DEFAULT", "BEGIN", "query", "COMMIT")}
    for driver in (d for d in DRIVERS if d.pooled and d.defaults_of is None):
        assert driver.setup is not None
        assert driver.setup.read == ("query",), driver.name
        assert driver.setup.write == exceptions.get(driver.name, ("BEGIN", "query", "COMMIT")), driver.name


def test_each_defaults_entry_is_its_driver_in_its_main_style() -> None:
    defaults = [d for d in DRIVERS if d.defaults_of is not None]
    assert defaults
    for driver in defaults:
        original = DRIVERS_BY_NAME[driver.defaults_of or ""]
        assert original.pooled and original.defaults_of is None, driver.name
        assert (driver.factory, driver.kind, driver.distributions) == (original.factory, original.kind, original.distributions)
        assert driver.workloads == (LOOKUP, WRITE) and len(driver.styles) == 1, driver.name
        assert driver.setup != original.setup, f"{driver.name} documents the same setup as {original.name}"
    assert {d.defaults_of for d in defaults} == {d.name for d in DRIVERS if d.pooled and d.variant_of is None}


def test_each_alternative_is_its_driver_on_another_pool_doing_the_same_work() -> None:
    """An ``alternative_to`` entry sends what its driver sends, in its driver's main style: the pool is all that differs."""
    alternatives = [d for d in DRIVERS if d.alternative_to is not None]
    assert [d.name for d in alternatives] == ["psycopg2-threaded"]
    for driver in alternatives:
        original = DRIVERS_BY_NAME[driver.alternative_to or ""]
        assert original.pooled and original.variant_of is None and driver.defaults_of is None, driver.name
        assert driver.kind is original.kind and driver.factory != original.factory, driver.name
        assert driver.workloads == (LOOKUP, WRITE) and driver.styles == original.styles[:1], driver.name
        assert driver.setup is not None and original.setup is not None
        assert (driver.setup.read, driver.setup.write) == (original.setup.read, original.setup.write), driver.name
