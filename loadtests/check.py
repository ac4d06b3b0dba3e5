"""``iobench-load check``: measure only what a set of claims names, one server per setup, and report for CI.

Claims that share a setup (everything but ``concurrency``, which a server serves at any level)
share a server and a run folder: the profile's, with the setup's S, threadpool, pools, workers
and RTT, its cases only the claims' (and, where two compared cases fall in different blocks,
their workload's reference, which pairs them: ``pairing``). Each folder is a usual run folder
whose run.json records the claims it judges, so ``iobench-load report`` judges them again.

For CI: JUnit XML with one test case per claim (``junit``) and a Markdown summary (``summary``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from loadtests.claims import Claim, Setup, scenario_of
from loadtests.findings import Verdict, finding_pairs
from loadtests.plan import TABLE_WORKLOADS, Block, Job, Pair, blocks, comparisons, reference
from loadtests.profiles import Case, Profile, cases_for

#: The check folder's own files, beside one run folder per setup.
CHECK = "check.json"
JUNIT = "junit.xml"
SUMMARY = "summary.md"


@dataclass(frozen=True)
class SetupRun:
    """The claims that share one setup, and what measuring them takes."""

    number: int
    setup: Setup
    claims: tuple[Claim, ...]
    profile: Profile
    jobs: tuple[Job, ...]
    pairs: tuple[Pair, ...]
    planned: tuple[Block, ...]

    @property
    def name(self) -> str:
        return f"setup-{self.number}"

    @property
    def cases(self) -> list[str]:
        """Every case measured, each once."""
        return list(dict.fromkeys(job.case.key for job in self.jobs))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "setup": self.setup.model_dump(), "describe": self.setup.describe(),
                "claims": [claim.id for claim in self.claims], "cases": self.cases,
                "blocks": [{"name": b.name, "sequence": [j.label for j in b.sequence]} for b in self.planned]}


def _case(key: str, seconds: float) -> Case:
    scenario = scenario_of(key)
    assert scenario is not None  # the claims were checked against the catalogue
    return next(case for case in cases_for(scenario, seconds) if case.key == key)


def _jobs(claims: Sequence[Claim], profile: Profile, setup: Setup) -> tuple[list[Job], list[tuple[str, str, str, int | None]]]:
    """The claims' cases at their concurrency (the profile's, else an extra measurement of its own), plus the
    reference that pairs two compared cases of different blocks, and the pairs with it that chain them."""
    via = "pgbouncer" if setup.pgbouncer else "direct"
    jobs: dict[tuple[str, int], Job] = {}

    def add(key: str, claim: Claim) -> None:
        concurrency = claim.concurrency or profile.concurrency
        own = claim.id if concurrency != profile.concurrency else None
        jobs.setdefault((key, concurrency), Job(_case(key, profile.seconds), concurrency, for_finding=own,
                                                rtt_ms=profile.db_rtt_ms, via=via))

    for claim in claims:
        for key in claim.cases:
            add(key, claim)
    chains = []
    for claim in claims:
        if claim.denominator is None:
            continue
        a, b = (jobs[(key, claim.concurrency or profile.concurrency)] for key in claim.cases)
        workload = a.case.scenario.workload.name
        if a.block != b.block and workload in TABLE_WORKLOADS:
            add(reference(workload), claim)
            chains += [(f"{claim.id} through the reference", key, reference(workload), claim.concurrency)
                       for key in claim.cases if key != reference(workload)]
    return list(jobs.values()), chains


def plan(claims: Sequence[Claim], base: Profile) -> list[SetupRun]:
    """One ``SetupRun`` per distinct setup, in the order the claims first name them."""
    groups: dict[tuple[Any, ...], list[Claim]] = {}
    for claim in claims:
        groups.setdefault(claim.setup.server(), []).append(claim)
    runs = []
    for number, members in enumerate(groups.values(), start=1):
        setup = members[0].setup.model_copy(update={"concurrency": None})
        rtt = setup.db_rtt_ms
        profile = dataclasses.replace(
            base, name="check", description=f"iobench-load check, setup {number}: {setup.describe()}",
            seconds=base.seconds if setup.seconds is None else setup.seconds,
            threadpool_tokens=setup.threadpool_tokens or base.threadpool_tokens,
            pool_max=setup.pool_max or base.pool_max, workers=setup.workers or base.workers,
            db_rtt_ms=float(rtt) if isinstance(rtt, float | int) else base.db_rtt_ms,
            scenario_ids=tuple(dict.fromkeys(s.id for c in members for key in c.cases if (s := scenario_of(key)))),
            sweep_ids=(), rtt_levels=(), pgbouncer=False, worker_levels=(), all_to_reference=False)
        jobs, chains = _jobs(members, profile, setup)
        pairs = comparisons(finding_pairs(members) + chains)
        judged = {(key, c.concurrency or profile.concurrency) for c in members if c.denominator is None for key in c.cases}
        runs.append(SetupRun(number, setup, tuple(members), profile, tuple(jobs), tuple(pairs),
                             tuple(blocks(jobs, pairs, profile.concurrency, judged, rounds=profile.repeat,
                                          ranked_rounds=profile.ranked_repeat))))
    return runs


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def describe(verdict: Verdict) -> str:
    """The verdict in one line: the figure with its interval, the threshold and where it came from."""
    finding, ratio = verdict.finding, verdict.ratio
    what = "ratio" if finding.denominator else finding.metric
    figure = (f"{what} {_number(ratio.center)} [{_number(ratio.low if ratio.bounded else None)}, "
              f"{_number(ratio.high if ratio.bounded else None)}] ({ratio.confidence:.0%})") if ratio else f"{what} -"
    if verdict.judged and ratio and verdict.judged.confidence != ratio.confidence:
        figure += f", judged at {verdict.judged.confidence:.1%} [{_number(verdict.judged.low)}, {_number(verdict.judged.high)}]"
    source = f" ({verdict.bar.source})" if verdict.bar and verdict.bar.source != "claim" else ""
    return f"{verdict.label}: {figure}; threshold {finding.op} {_number(verdict.threshold)}{source}"


def _outcome(verdict: Verdict) -> str | None:
    """The JUnit element a verdict becomes: None (passed), failure, error or skipped."""
    if verdict.status == "pass":
        return None
    if verdict.status == "fail":
        return "failure"
    return "error" if verdict.finding.required else "skipped"


def junit(verdicts: Sequence[tuple[str, Verdict]], seconds: float = 0.0) -> str:
    """JUnit XML: a test suite per claims file, a test case per claim (FAIL a failure; a required claim left
    unsettled an error; an unsettled one not required skipped), its figures in the message and properties."""
    root = ElementTree.Element("testsuites", name="iobench-load check")
    files = list(dict.fromkeys(file for file, _ in verdicts))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for file in files:
        mine = [v for f, v in verdicts if f == file]
        outcomes = [_outcome(v) for v in mine]
        counts = {"tests": len(mine), "failures": outcomes.count("failure"), "errors": outcomes.count("error"),
                  "skipped": outcomes.count("skipped")}
        suite = ElementTree.SubElement(root, "testsuite", {key: str(count) for key, count in counts.items()},
                                       name=file, time=f"{seconds:.1f}")
        for key, count in counts.items():
            totals[key] += count
        for verdict, outcome in zip(mine, outcomes, strict=True):
            finding = verdict.finding
            case = ElementTree.SubElement(suite, "testcase", classname=re.sub(r"\W+", "_", Path(file).stem),
                                          name=f"{finding.id}: {finding.statement}")
            properties = ElementTree.SubElement(case, "properties")
            ratio = verdict.ratio
            for name, value in (("status", verdict.status), ("required", str(finding.required).lower()),
                                ("claim", finding.claim), ("source", finding.source),
                                ("ratio", _number(ratio.center if ratio else None)),
                                ("low", _number(ratio.low if ratio and ratio.bounded else None)),
                                ("high", _number(ratio.high if ratio and ratio.bounded else None)),
                                ("threshold", _number(verdict.threshold)),
                                ("threshold_source", verdict.bar.source if verdict.bar else "-")):
                ElementTree.SubElement(properties, "property", name=name, value=value)
            message = describe(verdict) + ("" if finding.required else " (not required)")
            details = "\n".join(part for part in (finding.claim, f"source: {finding.source}", verdict.reason,
                                                  f"threshold: {verdict.bar.reason}" if verdict.bar else "") if part)
            if outcome is not None:
                ElementTree.SubElement(case, outcome, message=message, type=verdict.status.upper()).text = details
            else:
                ElementTree.SubElement(case, "system-out").text = f"{message}\n{details}"
    root.attrib.update({key: str(count) for key, count in totals.items()})
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary(verdicts: Sequence[tuple[str, Verdict]], runs: Sequence[SetupRun], exit_code: int, folder: Path) -> str:
    """A Markdown summary short enough for a CI job summary: the run's verdict, one row per claim."""
    failed = [v.finding.id for _, v in verdicts if v.finding.required and v.status == "fail"]
    unsettled = [v.finding.id for _, v in verdicts if v.finding.required and v.status not in ("pass", "fail")]
    head = ("every required claim passed" if exit_code == 0 else f"required claims failed: {', '.join(failed)}" if failed
            else f"required claims not settled: {', '.join(unsettled)}" if unsettled else f"the run failed (exit {exit_code})")
    setup_of = {claim.id: run.name for run in runs for claim in run.claims}
    lines = [f"### iobench claims: {head}", "",
             f"{len(verdicts)} claims, {len(runs)} setup(s), exit {exit_code}; run folders under `{folder}`.", "",
             "| claim | verdict | figure [95%] | threshold | required | setup | source |", "|---|---|---:|---:|---|---|---|"]
    for _, verdict in verdicts:
        finding, ratio = verdict.finding, verdict.ratio
        figure = (f"{_number(ratio.center)} [{_number(ratio.low if ratio.bounded else None)}, "
                  f"{_number(ratio.high if ratio.bounded else None)}]") if ratio else "-"
        label = verdict.label if finding.required and verdict.status == "pass" else f"**{verdict.label}**" \
            if finding.required else verdict.label
        lines.append(f"| {_cell(finding.id)}: {_cell(finding.statement)} | {label} | {figure} | {finding.op} "
                     f"{_number(verdict.threshold)} | {'yes' if finding.required else 'no'} | {setup_of.get(finding.id, '-')} "
                     f"| {_cell(finding.source)} |")
    lines += ["", "Setups: " + "; ".join(f"{run.name}: {run.setup.describe()} ({', '.join(run.cases)})" for run in runs)]
    return "\n".join(lines) + "\n"
