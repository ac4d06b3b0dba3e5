"""The article's claims as data, and their verdicts on a run's measurements.

A finding compares two cases by a ratio of one metric and holds when the ratio passes its
threshold. Required findings make the run fail when they fail: they are the architecture
rules a team relies on. The others are the claims that may not carry over from sleeps to
real drivers; they are measured and reported with the same care, but never tuned to pass.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Literal

from loadtests.results import is_main

Metric = Literal["rps", "ping_p50_ms"]
Status = Literal["pass", "fail", "inconclusive", "not measured"]

#: A measurement whose failed + non-2xx share is above this says nothing about throughput.
MAX_ERROR_SHARE = 0.01
MIN_PING_SAMPLES = 5


@dataclass(frozen=True)
class Finding:
    id: str
    title: str
    numerator: str
    denominator: str
    metric: Metric
    op: Literal[">=", "<="]
    threshold: float
    required: bool
    article: str
    why: str
    needs_concurrency_above_threadpool: bool = False
    #: Measure both cases at this many clients (an extra measurement) instead of the profile's.
    concurrency: int | None = None

    @property
    def claim(self) -> str:
        name = {"rps": "throughput", "ping_p50_ms": "median /ping latency"}[self.metric]
        at = f" at c = {self.concurrency}" if self.concurrency else ""
        return f"{name} of `{self.numerator}` {self.op} {self.threshold:g} x that of `{self.denominator}`{at}"


def _collapse(id: str, blocking: str, sync: str, article: str) -> Finding:
    return Finding(id, "An async route calling a blocking driver collapses", blocking, sync, "rps", "<=", 0.1, True,
                   article, "The blocking call holds the event loop: one request at a time per worker.")


FINDINGS: tuple[Finding, ...] = (
    _collapse("F1-wait", "wait/async-blocking/time", "wait/sync/time", "case 2 vs case 1: 0.17 vs 5.53 rps (1/33)"),
    _collapse("F1-psycopg2", "pg_sleep/async-blocking/psycopg2", "pg_sleep/sync/psycopg2", "carry-over of case 2 to psycopg2"),
    _collapse("F1-sqlalchemy", "pg_sleep/async-blocking/sqlalchemy-sync", "pg_sleep/sync/sqlalchemy-sync",
              "carry-over of case 2 to SQLAlchemy's sync engine"),
    Finding("F2-wait", "Async wins once clients outnumber threads", "wait/async/asyncio", "wait/sync/time", "rps", ">=", 1.5,
            True, "case 3 vs case 1: 11.06 vs 5.53 rps (2x)",
            "`def` routes share the threadpool's tokens; awaiting holds nothing.", needs_concurrency_above_threadpool=True),
    Finding("F2-asyncpg", "Async wins once clients outnumber threads", "pg_sleep/async/asyncpg", "pg_sleep/sync/psycopg2", "rps",
            ">=", 1.5, True, "case 3 vs case 1, on real Postgres",
            "asyncpg needs a connection, not a thread; holds while its pool is larger than the threadpool.",
            needs_concurrency_above_threadpool=True),
    Finding("F2-psycopg3", "Async wins once clients outnumber threads", "pg_sleep/async/psycopg3-async",
            "pg_sleep/sync/psycopg3-sync", "rps", ">=", 1.5, True, "case 3 vs case 1, psycopg 3 both ways",
            "Same driver, same pool size: only the style differs.", needs_concurrency_above_threadpool=True),
    Finding("F3-wait", "The threadpool rescues blocking code", "wait/threadpool/time", "wait/sync/time", "rps", ">=", 1.2, True,
            "case 4 vs case 1: 8.29 vs 5.53 rps (1.5x)",
            "Only one of the two steps holds a thread, so the threadpool serves twice the requests.",
            needs_concurrency_above_threadpool=True),
    Finding("F3-psycopg2", "The threadpool rescues blocking code", "pg_sleep/threadpool/psycopg2", "pg_sleep/sync/psycopg2",
            "rps", ">=", 1.2, True, "case 4 vs case 1 with psycopg2 for step 1 and asyncpg for step 2",
            "Step 1 holds a thread, step 2 only an asyncpg connection.", needs_concurrency_above_threadpool=True),
    Finding("F4-file", "Blocking file reads in async def stall everyone; aiofiles does not",
            "file/async-blocking/open[large.bin]", "file/async/aiofiles[large.bin]", "ping_p50_ms", ">=", 3.0, True,
            "the article's rule applied to files",
            "Reading 8 MiB with open() inside async def holds the loop, so /ping waits behind every read. Judged at a "
            "load the server can carry (8 clients): collateral latency is a question about a server with headroom.",
            concurrency=8),
    # Claims that may not carry over to real drivers: measured and reported, never required.
    Finding("N1-lookup", "Async is faster for fast point lookups", "lookup/async/asyncpg", "lookup/sync/psycopg2", "rps", ">=",
            1.5, False, "the article's 'async can double or triple performance', for a ~0.1 ms query",
            "When the query is far shorter than the HTTP work, CPU and the GIL bind, not waiting."),
    Finding("N2-lookup-collapse", "A blocking driver in async def collapses even for fast queries",
            "lookup/async-blocking/psycopg2", "lookup/sync/psycopg2", "rps", "<=", 0.1, False,
            "case 2's collapse, for a ~0.1 ms query",
            "Blocking the loop for a fraction of a millisecond costs little; skipping the thread hop may even win."),
    Finding("N3-small-file", "aiofiles is faster than open() for small cached files",
            "file/async/aiofiles[small.bin]", "file/sync/open[small.bin]", "rps", ">=", 1.0, False,
            "'use async for file I/O'",
            "aiofiles hands every call (open, read, close) to a thread; a 4 KiB read from the page cache is faster than the hop."),
    Finding("N4-report", "Async is faster for a few-millisecond report query", "report/async/asyncpg", "report/sync/psycopg2",
            "rps", ">=", 1.5, False, "'async can double or triple performance'",
            "The query's CPU time is in Postgres, which shares the machine's 2 cores with the service and ab."),
    Finding("N6-file-saturated", "aiofiles keeps the server responsive even at full load",
            "file/async-blocking/open[large.bin]", "file/async/aiofiles[large.bin]", "ping_p50_ms", ">=", 3.0, False,
            "the article's rule applied to files, at the profile's concurrency",
            "A cached read is CPU work (a memory copy). Once the CPU is saturated every request, /ping included, "
            "queues for it, whether the copy runs on the event loop or in aiofiles' threads."),
    Finding("N5-orm-cost", "SQLAlchemy's async engine keeps up with raw asyncpg on lookups", "lookup/async/sqlalchemy-async",
            "lookup/async/asyncpg", "rps", ">=", 0.8, False, "(not in the article: the cost of the ORM layer)",
            "Core adds Python work per query on the same asyncpg connection."),
)


@dataclass(frozen=True)
class Verdict:
    finding: Finding
    status: Status
    ratio: float | None
    numerator: float | None
    denominator: float | None
    predicted_ratio: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.finding.id, "title": self.finding.title, "claim": self.finding.claim,
            "required": self.finding.required, "status": self.status, "ratio": self.ratio,
            "numerator": self.numerator, "denominator": self.denominator,
            "predicted_ratio": self.predicted_ratio, "reason": self.reason,
        }


def _latest(records: list[dict[str, Any]], concurrency: int | None = None) -> dict[str, dict[str, Any]]:
    """The last measurement of each case: a main one, or any non-sweep one at ``concurrency``."""
    if concurrency is None:
        return {record["case"]: record for record in records if is_main(record)}
    return {r["case"]: r for r in records if not r.get("sweep") and r.get("concurrency") == concurrency}


def _value(record: dict[str, Any], metric: Metric) -> float | None:
    if metric == "rps":
        return (record.get("ab") or {}).get("requests_per_second")
    return (record.get("ping") or {}).get("p50_ms")


def unusable(record: dict[str, Any], metric: Metric) -> str | None:
    """Why a measurement cannot support a verdict, or None if it can."""
    if record.get("error"):
        return f"`{record['case']}` failed: {record['error']}"
    ab = record.get("ab") or {}
    asked = ab.get("requests") or 0
    bad = (ab.get("failed") or 0) + (ab.get("non_2xx") or 0)
    if asked and bad / asked > MAX_ERROR_SHARE:
        return f"`{record['case']}` had {bad} failed or non-2xx responses of {asked}"
    if metric == "ping_p50_ms" and (record.get("ping") or {}).get("count", 0) < MIN_PING_SAMPLES:
        return f"`{record['case']}` has fewer than {MIN_PING_SAMPLES} /ping samples"
    if _value(record, metric) is None:
        return f"`{record['case']}` has no {metric}"
    return None


def _predicted(record: dict[str, Any], metric: Metric) -> float | None:
    return (record.get("model") or {}).get("rps") if metric == "rps" else None


def _explain(finding: Finding, num: dict[str, Any], den: dict[str, Any], predicted_ratio: float | None, holds_in_theory: bool | None) -> str:
    """Why a finding failed, from the model's bounds and the measurements' efficiency and CPU use."""
    cpu = [f"{r['case']} kept the server's CPU {r['cpu_utilisation']:.0%} busy" for r in (num, den) if (r.get("cpu_utilisation") or 0) > 0.85]
    if finding.metric != "rps":
        pings = "; ".join(f"median /ping {_value(r, finding.metric):.1f} ms under {r['case']} (c = {r['concurrency']})" for r in (num, den))
        return f"{pings}. " + ("; ".join(cpu) + ": a saturated CPU delays /ping whatever the driver. " if cpu else "") + finding.why
    bound_num = (num.get("model") or {}).get("bound")
    bound_den = (den.get("model") or {}).get("bound")
    bounds = f"the model has `{finding.numerator}` bound by {bound_num} and `{finding.denominator}` by {bound_den}"
    if predicted_ratio is None:
        return f"No prediction for one side; {bounds}. {finding.why}"
    if holds_in_theory is False:
        return f"Theory agrees it should not hold here: {bounds} (predicted ratio {predicted_ratio:.2f}). {finding.why}"
    effs = [f"{r['case']} reached {r['efficiency']:.0%} of its prediction" for r in (num, den) if r.get("efficiency")]
    return f"{bounds} (predicted ratio {predicted_ratio:.2f}); " + "; ".join(effs + cpu) + f". {finding.why}"


def evaluate(finding: Finding, records: list[dict[str, Any]]) -> Verdict:
    """Judge one finding on the main measurements of a run."""
    latest = _latest(records, finding.concurrency)
    num, den = latest.get(finding.numerator), latest.get(finding.denominator)
    if num is None or den is None:
        missing = [case for case, record in ((finding.numerator, num), (finding.denominator, den)) if record is None]
        return Verdict(finding, "not measured", None, None, None, None, "not in this run: " + ", ".join(missing))
    for record in (num, den):
        if (why := unusable(record, finding.metric)) is not None:
            return Verdict(finding, "inconclusive", None, _value(num, finding.metric), _value(den, finding.metric), None, why)
    if finding.needs_concurrency_above_threadpool and num["concurrency"] <= num.get("threadpool_tokens", 0):
        return Verdict(finding, "inconclusive", None, None, None, None,
                       f"ran with {num['concurrency']} clients, not above the threadpool's {num['threadpool_tokens']} tokens")
    a, b = _value(num, finding.metric), _value(den, finding.metric)
    assert a is not None and b is not None
    compare = operator.ge if finding.op == ">=" else operator.le
    ratio = a / b if b else float("inf")
    pa, pb = _predicted(num, finding.metric), _predicted(den, finding.metric)
    predicted_ratio = pa / pb if pa and pb else None
    holds_in_theory = compare(predicted_ratio, finding.threshold) if predicted_ratio is not None else None
    status: Status = "pass" if compare(ratio, finding.threshold) else "fail"
    reason = finding.why if status == "pass" else _explain(finding, num, den, predicted_ratio, holds_in_theory)
    return Verdict(finding, status, ratio, a, b, predicted_ratio, reason)


def evaluate_all(records: list[dict[str, Any]], findings: tuple[Finding, ...] = FINDINGS) -> list[Verdict]:
    return [evaluate(finding, records) for finding in findings]


def required_failures(verdicts: list[Verdict]) -> list[Verdict]:
    """Required findings that failed or could not be judged on what was measured."""
    return [v for v in verdicts if v.finding.required and v.status in ("fail", "inconclusive")]
