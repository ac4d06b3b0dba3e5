"""Architecture claims as data: the TOML claims files, their pydantic model and their JSON Schema.

A claims file holds ``[[claim]]`` tables. A claim compares two cases by the ratio of a metric
(``scenario`` over ``baseline``) or one case against an absolute bound (no ``baseline``), and
holds in a setup (``[claim.setup]``: clients, S, threadpool, pools, workers, RTT, PgBouncer,
keep-alive). ``findings`` judges claims; ``check`` measures only what a set of claims names.
The built-in findings are the claims files shipped in ``loadtests/claims/`` (``builtin``).

Every error in a file is a ``ClaimsError`` naming the file, the claim's id and the field, found
before anything is started (``load``).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.catalogue import SCENARIOS_BY_ID, Scenario
from app.data_folder import LARGE_FILE, SMALL_FILE
from db.wire_proxy.rtt import MAX_RTT_MS
from loadtests.ab import MAX_CONCURRENCY

Metric = Literal["rps", "p50_ms", "p99_ms", "ping_p50_ms", "ping_p99_ms", "service_cpu_ms", "postgres_cpu_ms",
                 "round_trips", "statements", "error_rate"]
#: What each metric is, as a claim's sentence says it.
METRIC_NAMES: dict[str, str] = {
    "rps": "throughput", "p50_ms": "median latency", "p99_ms": "p99 latency",
    "ping_p50_ms": "median /ping latency", "ping_p99_ms": "p99 /ping latency",
    "service_cpu_ms": "service CPU ms per request", "postgres_cpu_ms": "Postgres CPU ms per request",
    "round_trips": "round trips per request", "statements": "statements per request", "error_rate": "error rate",
}
#: Metrics the /ping probe measures: their windows last long enough for its samples.
PING_METRICS = ("ping_p50_ms", "ping_p99_ms")
#: Metrics the queueing model predicts a ratio for (a ``threshold = "model"``).
MODEL_METRICS = ("rps", "ping_p50_ms")
#: The package's own claims files, in the order their findings are reported.
BUILTIN = ("article.toml", "real-drivers.toml")
SCHEMA = "schema.json"


class Setup(BaseModel):
    """The setup a claim holds in; omitted keys take the profile's. Claims with the same setup but
    ``concurrency`` share one server."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY, description="Concurrent ab clients (ab -c).")
    seconds: float | None = Field(None, ge=0, le=60, description="S: each of the two waits of wait/pg_sleep routes, in seconds.")
    threadpool_tokens: int | None = Field(None, ge=1, le=1000, description="AnyIO threadpool tokens of the service.")
    pool_max: int | None = Field(None, ge=1, le=1000, description="Connection pool size of every driver.")
    workers: int | None = Field(None, ge=1, le=16, description="uvicorn worker processes.")
    db_rtt_ms: float | Literal["largest"] | None = Field(
        None, description=f"Round trip (ms, 0 to {MAX_RTT_MS:g}) the wire proxy puts between the service and Postgres; "
        "\"largest\": the largest RTT a run measured (iobench-load --rtt-levels).")
    pgbouncer: bool = Field(False, description="The service reaches Postgres through PgBouncer (transaction pooling).")
    keepalive: bool = Field(False, description="HTTP keep-alive (ab -k).")

    def server(self) -> tuple[Any, ...]:
        """What needs a server of its own: every key but ``concurrency``."""
        return (self.seconds, self.threadpool_tokens, self.pool_max, self.workers, self.db_rtt_ms, self.pgbouncer,
                self.keepalive)

    def describe(self) -> str:
        parts = {"c": self.concurrency, "S": self.seconds, "threadpool": self.threadpool_tokens, "pools": self.pool_max,
                 "workers": self.workers, "RTT ms": self.db_rtt_ms}
        text = [f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}"
                for key, value in parts.items() if value is not None]
        return ", ".join(text + (["PgBouncer"] if self.pgbouncer else []) + (["keep-alive"] if self.keepalive else [])) \
            or "the profile's"


class Claim(BaseModel):
    """One claim: what it says, where it comes from, and the comparison that checks it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80, description="Unique across the files checked.")
    statement: str = Field(min_length=1, description="The claim in one sentence, as the doc or article makes it.")
    source: str = Field(min_length=1, description="The doc or article it checks: a URL or a path.")
    evidence: str = Field("", description="What the source says or measured, in its own terms.")
    why: str = Field("", description="Why it should hold (or may not), shown with the verdict.")
    required: bool = Field(True, description="A required claim decides the exit code; the others are reported.")
    scenario: str = Field(description="A case: a scenario id, plus [small.bin] or [large.bin] for file scenarios.")
    baseline: str | None = Field(None, description="The case the ratio divides by; omitted: an absolute bound on scenario.")
    metric: Metric = Field("rps", description="What is compared.")
    op: Literal[">=", "<="] = Field(description="The ratio (or the value) must be >= or <= the threshold.")
    threshold: float | Literal["model"] = Field(
        description="A number, or \"model\": sqrt of the ratio the queueing model predicts (rps and ping_p50_ms ratios).")
    threshold_reason: str = Field("", description="Why this number.")
    setup: Setup = Field(default_factory=Setup, description="The setup it holds in; omitted keys take the profile's.")

    # The names the findings' evaluation and the reports read.
    @property
    def title(self) -> str:
        return self.statement

    @property
    def numerator(self) -> str:
        return self.scenario

    @property
    def denominator(self) -> str | None:
        return self.baseline

    @property
    def article(self) -> str:
        return self.evidence

    @property
    def concurrency(self) -> int | None:
        return self.setup.concurrency

    @property
    def far(self) -> bool:
        """Judged at the largest RTT the run measured."""
        return self.setup.db_rtt_ms == "largest"

    @property
    def fixed_threshold(self) -> float | None:
        """The claim's own number; None: derived from the model."""
        return None if self.threshold == "model" else float(self.threshold)

    @property
    def cases(self) -> tuple[str, ...]:
        return (self.scenario,) if self.baseline is None else (self.scenario, self.baseline)

    @property
    def claim(self) -> str:
        """The comparison in words (the reports' "claim" column)."""
        name = METRIC_NAMES[self.metric]
        at = f" at c = {self.concurrency}" if self.concurrency else " at the largest RTT measured" if self.far else ""
        bar = f"{self.fixed_threshold:g}" if self.fixed_threshold is not None else "sqrt(model ratio)"
        if self.baseline is None:
            return f"{name} of `{self.scenario}` {self.op} {bar}{at}"
        return f"{name} of `{self.scenario}` {self.op} {bar} x that of `{self.baseline}`{at}"

    def holds(self, ratio: float, threshold: float) -> bool:
        return ratio >= threshold if self.op == ">=" else ratio <= threshold


class ClaimsFile(BaseModel):
    """A claims file: ``[[claim]]`` tables, and an optional description of whose claims they are."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, title="iobench claims file")

    description: str = Field("", description="Whose claims these are, and where they come from.")
    claim: list[Claim] = Field(min_length=1, description="The claims, in the order they are reported.")


@dataclass(frozen=True)
class ClaimsError(Exception):
    """A claims file that cannot be checked: which file, which claim, which field, and why."""

    file: str
    claim: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file] + ([f"claim {self.claim}"] if self.claim else []) + ([self.field] if self.field else [])
        return ": ".join(where + [self.message])


def scenario_of(case: str) -> Scenario | None:
    """The catalogue scenario of a case key (``file/sync/open[large.bin]`` -> ``file/sync/open``)."""
    return SCENARIOS_BY_ID.get(case.split("[", 1)[0])


def case_problem(case: str) -> str | None:
    """Why ``case`` names no case of the catalogue, or None."""
    match = re.fullmatch(r"([^\[\]]+)(?:\[([^\[\]]+)\])?", case)
    scenario = SCENARIOS_BY_ID.get(match.group(1)) if match else None
    if match is None or scenario is None or scenario.workload.name == "hello":
        return f"unknown scenario {case!r} (see iobench-load --list)"
    files = (SMALL_FILE, LARGE_FILE)
    if scenario.workload.name == "file" and match.group(2) not in files:
        return f"a file scenario names its file: {match.group(1)}[{files[0]}] or {match.group(1)}[{files[1]}]"
    if scenario.workload.name != "file" and match.group(2) is not None:
        return f"{match.group(1)} reads no file: drop [{match.group(2)}]"
    return None


def problems(claim: Claim) -> list[tuple[str, str]]:
    """What the schema cannot say is wrong with a claim: (field, why)."""
    found = [(name, why) for name, case in (("scenario", claim.scenario), ("baseline", claim.baseline))
             if case is not None and (why := case_problem(case))]
    if claim.threshold == "model" and (claim.baseline is None or claim.metric not in MODEL_METRICS):
        found.append(("threshold", f"\"model\" needs a ratio of two cases (a baseline) of {' or '.join(MODEL_METRICS)}; "
                      f"give a number for {claim.metric}" + ("" if claim.baseline else " against one case")))
    if not found and claim.baseline is not None and claim.baseline.split("/")[0] != claim.scenario.split("/")[0]:
        found.append(("baseline", "a ratio pairs two cases of one workload, measured side by side; "
                      f"{claim.scenario.split('/')[0]} and {claim.baseline.split('/')[0]} differ"))
    if claim.baseline is not None and claim.baseline == claim.scenario:
        found.append(("baseline", "the same case as scenario: the ratio is 1 by construction"))
    if claim.baseline is not None and claim.metric == "error_rate":
        found.append(("metric", "error_rate is judged against an absolute bound: drop baseline"))
    rtt = claim.setup.db_rtt_ms
    if isinstance(rtt, float) and not 0 <= rtt <= MAX_RTT_MS:
        found.append(("setup.db_rtt_ms", f"milliseconds from 0 to {MAX_RTT_MS:g}, got {rtt:g}"))
    return found


def _field(loc: Sequence[int | str]) -> str:
    """A pydantic error location as the field a reader wrote (union members' tags dropped)."""
    names = []
    for part in loc:
        if isinstance(part, int) or not re.fullmatch(r"[a-z_]+", part) or part in ("float", "int", "str", "bool", "none"):
            break
        names.append(part)
    return ".".join(names)


def _message(error: Any, field: str) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = Setup if field.startswith("setup.") else Claim if "." not in field else ClaimsFile
        what = "setup key" if owner is Setup else "field"
        return f"unknown {what}; known: {', '.join(owner.model_fields)}"
    if field == "threshold":
        return f"a number or \"model\", got {error.get('input')!r}"
    if field == "metric":
        return f"unknown metric {error.get('input')!r}; known: {', '.join(METRIC_NAMES)}"
    if field == "setup.db_rtt_ms":
        return f"milliseconds (a number) or \"largest\", got {error.get('input')!r}"
    return str(error["msg"]) + (f", got {error['input']!r}" if kind != "missing" and "input" in error else "")


def parse(text: str, file: str) -> list[Claim]:
    """The claims of one file's text, checked against the schema and the catalogue."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClaimsError(file, None, None, f"not valid TOML: {exc}") from None
    try:
        parsed = ClaimsFile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        if loc[:1] == ("claim",) and len(loc) > 1 and isinstance(loc[1], int):
            entries = raw.get("claim") or []
            entry = entries[loc[1]] if loc[1] < len(entries) else {}
            claim_id = str(entry.get("id") or f"#{loc[1] + 1}") if isinstance(entry, dict) else f"#{loc[1] + 1}"
            field = _field(loc[2:])
            raise ClaimsError(file, claim_id, field or None, _message(error, field)) from None
        field = _field(loc)
        raise ClaimsError(file, None, field or None, _message(error, field)) from None
    for claim in parsed.claim:
        for field, why in problems(claim):
            raise ClaimsError(file, claim.id, field, why)
    return parsed.claim


def check_unique(claims: Iterable[tuple[str, Claim]]) -> None:
    """Ids are unique across every file checked together."""
    seen: dict[str, str] = {}
    for file, claim in claims:
        if claim.id in seen:
            raise ClaimsError(file, claim.id, "id", f"duplicate id (also in {seen[claim.id]})")
        seen[claim.id] = file


def load(paths: Sequence[Path]) -> list[tuple[str, Claim]]:
    """Every claim of ``paths`` with the file it came from, checked; raises ``ClaimsError``."""
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ClaimsError(str(path), None, None, f"cannot be read: {exc}") from None
        found += [(str(path), claim) for claim in parse(text, str(path))]
    check_unique(found)
    return found


def builtin() -> tuple[Claim, ...]:
    """The findings iobench itself checks: the claims files shipped in the package."""
    folder = resources.files("loadtests.claims")
    found = [(name, claim) for name in BUILTIN for claim in parse(folder.joinpath(name).read_text(encoding="utf-8"), name)]
    check_unique(found)
    return tuple(claim for _, claim in found)


def schema() -> dict[str, Any]:
    """The claims file's JSON Schema, generated from the model (``loadtests/claims/schema.json`` holds it)."""
    return ClaimsFile.model_json_schema()


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
