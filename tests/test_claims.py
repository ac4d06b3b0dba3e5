"""Claims files (loadtests.claims): the built-in findings as data, their schema, and bad files refused by name."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from loadtests import legacy
from loadtests.claims import SCHEMA, Claim, ClaimsError, builtin, load, parse, schema, schema_text
from loadtests.findings import FINDINGS, evaluate_all

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SNAPSHOT = FIXTURES / "verdicts-snapshot.json"


def test_the_published_schema_is_the_models() -> None:
    committed = (ROOT / "loadtests" / "claims" / SCHEMA).read_text()
    assert committed == schema_text(), "regenerate it: iobench-load claims-schema > loadtests/claims/schema.json"
    assert json.loads(committed)["additionalProperties"] is False


def test_no_claim_stays_in_python() -> None:
    assert FINDINGS == builtin() and all(isinstance(finding, Claim) for finding in FINDINGS)
    assert len({finding.id for finding in FINDINGS}) == len(FINDINGS)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize("folder", sorted(json.loads(SNAPSHOT.read_text())["folders"]))
def test_the_claims_files_reproduce_the_verdicts_of_the_code_before_them(folder: str) -> None:
    """Verdict, ratio, interval and threshold of every finding on each committed run folder, as the findings
    in Python gave them (tests/fixtures/snapshot_verdicts.py, run on the code before claims files)."""
    expected = json.loads(SNAPSHOT.read_text())["folders"][folder]
    if not (ROOT / folder / "results.jsonl").is_file():
        pytest.skip(f"{folder} is not committed")
    run, records = legacy.read(ROOT / folder)
    found = [verdict.to_dict() for verdict in evaluate_all(records, run)]
    assert [v["id"] for v in found] == [v["id"] for v in expected]
    for new, old in zip(found, expected, strict=True):
        for key in old:
            assert _close(new[key], old[key]), f"{folder} {old['id']} {key}: {new[key]!r} != {old[key]!r}"


GOOD = """
[[claim]]
id = "mine"
statement = "asyncpg beats psycopg2 on lookups"
source = "docs/architecture.md#database"
scenario = "lookup/async/asyncpg"
baseline = "lookup/sync/psycopg2"
op = ">="
threshold = 1.2
"""


def test_a_good_file_parses_with_defaults() -> None:
    (claim,) = parse(GOOD, "mine.toml")
    assert claim.required and claim.metric == "rps" and claim.fixed_threshold == 1.2 and claim.setup.concurrency is None
    assert claim.claim == "throughput of `lookup/async/asyncpg` >= 1.2 x that of `lookup/sync/psycopg2`"


def test_ids_are_unique_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(GOOD)
    (tmp_path / "b.toml").write_text(GOOD)
    with pytest.raises(ClaimsError, match=r"b\.toml: claim mine: id: duplicate id \(also in .*a\.toml\)"):
        load([tmp_path / "a.toml", tmp_path / "b.toml"])


def test_the_schema_describes_every_field() -> None:
    found = schema()
    for model in ("Claim", "Setup"):
        for name, field in found["$defs"][model]["properties"].items():
            assert field.get("description"), f"{model}.{name} has no description"
