"""Verdicts of claims on a run's repetitions: iobench's own findings and a team's claims files.

The claims are data (``loadtests.claims``: TOML files checked by a pydantic model); iobench's
findings are the claims files shipped in ``loadtests/claims/``. A claim compares two cases by
the ratio of one metric, or one case against an absolute bound. Both cases of a ratio are
measured side by side in each round of one block (``plan``), so the ratio is judged on the
per-round ratios (``pairing.compare``): PASS when its whole interval is past the threshold,
FAIL when the whole interval misses it, INCONCLUSIVE otherwise. A bound is judged the same way
on the interval of the case's own value over the rounds. The interval is at 95%, or at the
Bonferroni level of the run's looks when the profile allows extra rounds (``stats.Looks``).

Where a threshold comes from. A claim of the model ("async wins once clients outnumber
threads") predicts a ratio R: Little's law over the two routes' capacities at the profile's
declared shape (its threadpool, its pools, the clients). The claim holds when the effect
shows up, so the threshold is sqrt(R), the midpoint between no effect (1) and the predicted
effect on a log scale. A shape that predicts less than ``MIN_EFFECT`` cannot test the claim:
the finding is NOT APPLICABLE there. The bar is set by the profile as declared, not by the
server measured: a run whose server differs (``--pool-max 1``, a ``--target`` shaped
otherwise) is judged against the architecture it was meant to have, and the model's
prediction for the server it did have explains the verdict.

/ping findings use Little's law on the event loop instead: under a route that blocks it, the
loop is the bottleneck, so a /ping arriving behind the c requests in service waits c / X for
the loop (X the blocking route's throughput) on top of what /ping costs anyway. Both come from
the calibration, before the rounds: X is the blocking route's prediction, /ping's cost its
uncontended latency on the same server. The predicted ratio is 1 + c / (X * ping), and the
threshold again its square root. No threshold is ever computed from the rounds it judges. The
non-required claims quoted from the article carry their own threshold and say why.

A pass whose ratio is out of the model's predicted range (the whole interval outside ±25% of
the prediction for the measured server) is reported as "pass, unexplained".

Required findings decide the run's exit code: a required finding that is not applicable or not
measured is never a pass (the run exits 4 and says why). The others are claims that may not
carry over from sleeps to real drivers, measured and reported with the same care but never
tuned to pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from loadtests.claims import PING_METRICS, Claim, Metric, builtin, scenario_of
from loadtests.model import CPU_BUSY, MODEL_BAND, ServerShape, capacity
from loadtests.pairing import Comparison, compare
from loadtests.results import Record, error_share, is_main, ping_count, predicted_rps, successful_rps, too_many_errors
from loadtests.stats import CONFIDENCE, Interval, interval, mean_interval, median

#: "not selected": a run that measured a selection (--scenario, --workload, ...) left out one of the finding's
#: cases on purpose; such a finding is neither judged nor counted in the exit code.
Status = Literal["pass", "fail", "inconclusive", "not measured", "not applicable", "not selected"]

#: The smallest effect (either way) a profile's shape must predict for a model claim to be testable there.
MIN_EFFECT = 1.5
#: Fewer /ping samples than this in one repetition cannot give a median worth comparing.
MIN_PING_SAMPLES = 20

#: A finding is a claim (``loadtests.claims``); iobench's own are the claims files shipped in the package.
Finding = Claim
FINDINGS: tuple[Finding, ...] = builtin()
FINDINGS_BY_ID = {finding.id: finding for finding in FINDINGS}


def finding_pairs(findings: Iterable[Finding]) -> list[tuple[str, str, str, int | None]]:
    """(id, numerator, denominator, concurrency) of every ratio claim: the pairs a run keeps side by side."""
    return [(f.id, f.numerator, f.denominator, f.concurrency) for f in findings if f.denominator is not None]


@dataclass(frozen=True)
class Declared:
    """The server shape and load a profile declares: what the findings' thresholds are derived from."""

    shape: ServerShape
    concurrency: int

    @classmethod
    def from_run(cls, run: dict[str, Any]) -> Declared | None:
        profile = run.get("profile") or {}
        declared = profile.get("declared") or profile
        try:
            shape = ServerShape.declared(int(declared["threadpool_tokens"]), int(declared["pool_max"]),
                                         workers=int(declared.get("workers") or 1))
            return cls(shape, int(declared["concurrency"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Bar:
    """The threshold a finding is judged against, and where it came from."""

    threshold: float | None  # None: the claim cannot be tested at this shape
    model_ratio: float | None  # Little's law at the declared shape, when the threshold comes from it
    reason: str
    #: "claim" (the finding's own number), "declared shape" (the profile's) or "calibration" (measured before the rounds).
    source: str = "claim"


def _from_model(finding: Finding, ratio: float, where: str, source: str) -> Bar:
    effect = ratio if finding.op == ">=" else 1 / ratio
    if effect < MIN_EFFECT:
        return Bar(None, ratio, f"{where} Little's law predicts a ratio of {ratio:.3g}, less than a {MIN_EFFECT:g}x "
                   "effect: this setup cannot test the claim", source)
    threshold = math.sqrt(ratio)
    return Bar(threshold, ratio, f"{where} Little's law predicts {ratio:.3g}; the claim holds when at least half that "
               f"effect shows on a log scale: sqrt({ratio:.3g}) = {threshold:.3g}", source)


def loop_queue_ratio(concurrency: int, blocking_rps: float, ping_ms: float) -> float:
    """/ping under a loop-blocking route over /ping under its twin: 1 + c / (X * ping) (see the module docstring)."""
    return 1 + concurrency / (blocking_rps * ping_ms / 1000)


def bar(finding: Finding, declared: Declared | None, concurrency: int, loop_queue: float | None = None) -> Bar:
    """The finding's threshold at ``concurrency`` clients: the claim's own, or derived from the model.

    ``loop_queue`` is the loop-queue ratio from the calibration (``loop_queue_ratio``), which /ping findings need.
    """
    if finding.denominator is None:
        return Bar(finding.fixed_threshold, None, finding.threshold_reason)
    if finding.metric == "ping_p50_ms":
        # Whether the claim can show here is the model's to say (from the calibration), for a claimed bar too.
        if loop_queue is None:
            return Bar(None, None, "the calibration measured no /ping latency or no prediction for the blocking route",
                       "calibration")
        where = f"with the event loop as the blocking route's bottleneck at c = {concurrency}, from the calibration,"
        modelled = _from_model(finding, loop_queue, where, "calibration")
        if finding.fixed_threshold is None or modelled.threshold is None:
            return modelled
        return Bar(finding.fixed_threshold, loop_queue, f"{finding.threshold_reason} ({where} Little's law predicts "
                   f"{loop_queue:.3g}: the setup can show the claim)")
    if finding.fixed_threshold is not None:
        return Bar(finding.fixed_threshold, None, finding.threshold_reason)
    num, den = scenario_of(finding.numerator), scenario_of(finding.denominator)
    if declared is None or num is None or den is None:
        return Bar(None, None, "the run does not record the profile's declared shape, so no threshold can be derived",
                   "declared shape")
    ratio = capacity(num, concurrency, declared.shape) / capacity(den, concurrency, declared.shape)
    shape = (f"{declared.shape.threadpool_tokens} threadpool tokens, pools of "
             f"{max(declared.shape.pool_max.values(), default=0)}, c = {concurrency}")
    return _from_model(finding, ratio, f"at the profile's shape ({shape})", "declared shape")


@dataclass(frozen=True)
class Verdict:
    finding: Finding
    status: Status
    #: The ratio with its 95% interval (what tables show) and with the interval the verdict was taken on.
    ratio: Interval | None
    judged: Interval | None
    bar: Bar | None
    #: The model's ratio for the server actually measured (its calibration: W, S, the loop queue).
    predicted_ratio: float | None
    #: For a pass: whether the ratio is within the model's band around ``predicted_ratio`` (None: no prediction).
    explained: bool | None
    numerator: Interval | None
    denominator: Interval | None
    rounds: int
    reason: str
    #: None: the two cases side by side; else the reference both were measured beside.
    through: str | None = None

    @property
    def threshold(self) -> float | None:
        return self.bar.threshold if self.bar else None

    @property
    def label(self) -> str:
        text = self.status.upper()
        return text + ", UNEXPLAINED" if self.status == "pass" and self.explained is False else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.finding.id, "title": self.finding.title, "claim": self.finding.claim,
            "required": self.finding.required, "status": self.status, "label": self.label,
            "ratio": self.ratio.to_dict() if self.ratio else None, "judged": self.judged.to_dict() if self.judged else None,
            "threshold": self.threshold, "threshold_source": self.bar.source if self.bar else None,
            "model_ratio": self.bar.model_ratio if self.bar else None, "predicted_ratio": self.predicted_ratio,
            "explained": self.explained, "rounds": self.rounds, "through": self.through, "reason": self.reason,
        }


def _positive(found: Any) -> float | None:
    return float(found) if isinstance(found, int | float) and found > 0 else None


def value(record: Record, metric: Metric) -> float | None:
    """``metric`` of one measurement (None: not measured, or not a positive figure where one is needed)."""
    if metric == "rps":
        return successful_rps(record)
    if metric == "error_rate":
        return error_share(record)
    if metric in ("p50_ms", "p99_ms"):
        return _positive((record.get("ab") or {}).get(metric))
    if metric in PING_METRICS:
        ping: dict[str, Any] = dict(record.get("ping") or {})
        return _positive(ping.get(metric.removeprefix("ping_")))
    if metric in ("service_cpu_ms", "postgres_cpu_ms"):
        seconds = (record.get("cpu") or {}).get(metric.replace("_cpu_ms", "_s"))
        return _positive(seconds * 1000 if isinstance(seconds, int | float) else None)
    wire: dict[str, Any] = dict(record.get("wire") or {})
    return _positive(wire.get(metric))  # round_trips, statements


def unusable(record: Record, metric: Metric) -> str | None:
    """Why a measurement cannot support a verdict, or None if it can."""
    if record.get("error"):
        return f"`{record['case']}` failed: {record['error']}"
    if metric != "error_rate" and too_many_errors(record):
        ab = record.get("ab") or {}
        bad = int(ab.get("failed") or 0) + int(ab.get("non_2xx") or 0)
        return f"`{record['case']}` had {bad} failed or non-2xx responses of {ab.get('complete')}"
    if metric in PING_METRICS and ping_count(record) < MIN_PING_SAMPLES:
        return f"`{record['case']}` has fewer than {MIN_PING_SAMPLES} /ping samples"
    if value(record, metric) is None:
        return f"`{record['case']}` has no {metric}"
    return None


def usable_value(metric: Metric) -> Callable[[Record], float | None]:
    """``metric`` of each measurement a verdict can use, None for the others: what a finding's interval is made of."""
    return lambda record: value(record, metric) if unusable(record, metric) is None else None


def records_for(finding: Finding, records: Iterable[Record], *, every_case: bool = False) -> list[Record]:
    """The measurements a finding judges, of either of its cases (or, ``every_case``, of any case, for a
    comparison through the reference): at its concurrency, or the largest RTT."""
    cases = finding.cases
    mine = [r for r in records if (every_case or r["case"] in cases) and not r.get("sweep")]
    if finding.concurrency:
        return [r for r in mine if r.get("concurrency") == finding.concurrency]
    if finding.far:
        at_rtt = [r for r in mine if not r.get("for_finding") and (r.get("via") or "direct") == "direct"]
        farthest = max((float(r.get("rtt_ms") or 0) for r in at_rtt), default=0.0)
        return [r for r in at_rtt if farthest > 0 and float(r.get("rtt_ms") or 0) == farthest]
    return [r for r in mine if is_main(r)]


def _explain_fail(finding: Finding, nums: list[Record], dens: list[Record], predicted: float | None) -> str:
    """Why a finding missed, from the model's bounds and the measurements' CPU use."""
    def cpu_note(records: list[Record]) -> str | None:
        busy = median([u for r in records if (u := r.get("cpu_utilisation")) is not None])
        return f"`{records[0]['case']}` kept the server's CPU {busy:.0%} busy" if busy is not None and busy > CPU_BUSY else None

    cpu = [note for note in (cpu_note(nums), cpu_note(dens)) if note]
    if finding.metric in PING_METRICS:
        return ("; ".join(cpu) + ": a saturated CPU delays /ping whatever the driver. " if cpu else "") + finding.why
    if finding.metric != "rps":
        return ("; ".join(cpu) + ". " if cpu else "") + finding.why
    bounds = (f"the model has `{finding.numerator}` bound by {(nums[0].get('model') or {}).get('bound')} and "
              f"`{finding.denominator}` by {(dens[0].get('model') or {}).get('bound')}")
    if predicted is None:
        return f"No prediction for one side; {bounds}. {finding.why}"
    threshold = math.sqrt(predicted) if finding.fixed_threshold is None else finding.fixed_threshold
    if not finding.holds(predicted, threshold):
        return f"The model agrees for this server: {bounds}, predicted ratio {predicted:.3g}. {finding.why}"
    return f"{bounds}, predicted ratio {predicted:.3g}" + ("; " + "; ".join(cpu) if cpu else "") + f". {finding.why}"


def _calibrated_loop_queue(finding: Finding, nums: list[Record], dens: list[Record]) -> float | None:
    """1 + c / (X * ping) from the calibration: X the blocking route's predicted rate, ping /ping's uncontended latency."""
    concurrency = int(nums[0].get("concurrency") or 0) if nums else 0
    rates = [x for r in nums if (x := predicted_rps(r))]
    pings = [p for r in [*nums, *dens] if (p := r.get("ping_uncontended_ms"))]
    if not concurrency or not rates or not pings:
        return None
    return loop_queue_ratio(concurrency, float(median(rates) or 0), float(median(pings) or 0))


def evaluate(finding: Finding, records: list[Record], declared: Declared | None, confidence: float = CONFIDENCE) -> Verdict:
    """Judge one finding on every round in which both of its cases were measured."""
    if finding.denominator is None:
        return _evaluate_bound(finding, records, confidence)
    mine = records_for(finding, records)
    nums = [r for r in mine if r["case"] == finding.numerator]
    dens = [r for r in mine if r["case"] == finding.denominator]
    if not nums or not dens:
        missing = [case for case, found in ((finding.numerator, nums), (finding.denominator, dens)) if not found]
        return Verdict(finding, "not measured", None, None, None, None, None, None, None, 0, "not in this run: " + ", ".join(missing))
    concurrency = int(nums[0].get("concurrency") or 0)
    loop_queue = _calibrated_loop_queue(finding, nums, dens) if finding.metric == "ping_p50_ms" else None
    the_bar = bar(finding, declared, concurrency, loop_queue)
    problems = [why for r in mine if (why := unusable(r, finding.metric))]
    usable = [r for r in mine if unusable(r, finding.metric) is None]

    def metric(record: Record) -> float | None:
        return value(record, finding.metric)

    # Two cases that never shared a block compare through the reference beside each: it comes along.
    context = usable + [r for r in records_for(finding, records, every_case=True)
                        if r["case"] not in (finding.numerator, finding.denominator) and unusable(r, finding.metric) is None]
    judged = compare(context, finding.numerator, finding.denominator, metric, confidence)
    shown = compare(context, finding.numerator, finding.denominator, metric) if confidence != CONFIDENCE else judged
    num_side = interval([v for r in usable if r["case"] == finding.numerator and (v := metric(r)) is not None])
    den_side = interval([v for r in usable if r["case"] == finding.denominator and (v := metric(r)) is not None])
    predicted = loop_queue
    if finding.metric == "rps":
        top = median([x for r in nums if (x := predicted_rps(r))])
        bottom = median([x for r in dens if (x := predicted_rps(r))])
        predicted = top / bottom if top and bottom else None

    def verdict(status: Status, reason: str, explained: bool | None = None, found: Comparison | None = judged) -> Verdict:
        return Verdict(finding, status, shown.interval if shown else None, found.interval if found else None, the_bar,
                       predicted, explained, num_side, den_side, found.rounds if found else 0, reason,
                       found.through if found else None)

    if the_bar.threshold is None:
        return verdict("not applicable", the_bar.reason)
    if judged is None:
        return verdict("inconclusive", "no round with both cases usable: " + "; ".join(problems[:2]))
    ratio = judged.interval
    if not ratio.bounded:
        return verdict("inconclusive", f"one usable round gives no interval ({'; '.join(problems[:1]) or 'one repetition'})")
    threshold = the_bar.threshold
    passed = ratio.low >= threshold if finding.op == ">=" else ratio.high <= threshold
    failed = ratio.high < threshold if finding.op == ">=" else ratio.low > threshold
    if passed:
        explained = None
        if predicted:
            explained = ratio.high >= predicted / MODEL_BAND and ratio.low <= predicted * MODEL_BAND
        reason = finding.why
        if explained is False:
            reason = (f"pass, unexplained: the ratio's interval [{ratio.low:.3g}, {ratio.high:.3g}] lies outside "
                      f"{MODEL_BAND:g}x of the model's {predicted:.3g} for this server. {finding.why}")
        return verdict("pass", reason, explained)
    if failed:
        return verdict("fail", _explain_fail(finding, nums, dens, predicted))
    return verdict("inconclusive", f"the {ratio.confidence:.1%} interval [{ratio.low:.3g}, {ratio.high:.3g}] over "
                   f"{judged.rounds} rounds straddles the threshold {threshold:.3g}")


def _evaluate_bound(finding: Finding, records: list[Record], confidence: float) -> Verdict:
    """Judge a claim on one case against an absolute bound: the interval of its value over the rounds."""
    mine = records_for(finding, records)
    the_bar = bar(finding, None, 0)
    if not mine:
        return Verdict(finding, "not measured", None, None, the_bar, None, None, None, None, 0,
                       f"not in this run: {finding.numerator}")
    problems = [why for r in mine if (why := unusable(r, finding.metric))]
    found = [v for r in mine if unusable(r, finding.metric) is None and (v := value(r, finding.metric)) is not None]
    # Counts and error rates may be 0 and do not scatter multiplicatively: their interval is on the plain scale.
    plain = finding.metric in ("error_rate", "round_trips", "statements")
    judged = (mean_interval(found, confidence) if plain else interval(found, confidence)) if found else None
    shown = (mean_interval(found) if plain else interval(found)) if found and confidence != CONFIDENCE else judged

    def verdict(status: Status, reason: str) -> Verdict:
        side = judged if judged else None
        return Verdict(finding, status, shown, judged, the_bar, None, None, side, None, len(found), reason)

    if judged is None:
        return verdict("inconclusive", "no usable measurement: " + "; ".join(problems[:2]))
    if not judged.bounded:
        return verdict("inconclusive", f"one usable round gives no interval ({'; '.join(problems[:1]) or 'one repetition'})")
    threshold = the_bar.threshold
    assert threshold is not None  # an absolute bound is always the claim's own number
    if (judged.low >= threshold) if finding.op == ">=" else (judged.high <= threshold):
        return verdict("pass", finding.why)
    if (judged.high < threshold) if finding.op == ">=" else (judged.low > threshold):
        return verdict("fail", _explain_bound(finding, mine))
    return verdict("inconclusive", f"the {judged.confidence:.1%} interval [{judged.low:.3g}, {judged.high:.3g}] over "
                   f"{len(found)} rounds straddles the threshold {threshold:.3g}")


def _explain_bound(finding: Finding, records: list[Record]) -> str:
    busy = median([u for r in records if (u := r.get("cpu_utilisation")) is not None])
    cpu = f"`{finding.numerator}` kept the server's CPU {busy:.0%} busy. " if busy is not None and busy > CPU_BUSY else ""
    return cpu + finding.why


def findings_of(run: dict[str, Any]) -> tuple[Finding, ...]:
    """The claims a run judges: those its run.json records (``iobench-load check``), else iobench's own findings."""
    recorded = run.get("claims")
    return tuple(Claim.model_validate(claim) for claim in recorded) if recorded else FINDINGS


def evaluate_all(records: list[Record], run: dict[str, Any], findings: tuple[Finding, ...] | None = None,
                 confidence: float | None = None) -> list[Verdict]:
    """Every finding's verdict (default: the run's own, ``findings_of``), at ``confidence`` (default: the run's
    own looks, as run.json records them)."""
    declared = Declared.from_run(run)
    level = confidence or float((run.get("looks") or {}).get("confidence") or CONFIDENCE)
    return [_unselected(finding, run) or evaluate(finding, records, declared, level)
            for finding in (findings_of(run) if findings is None else findings)]


def _unselected(finding: Finding, run: dict[str, Any]) -> Verdict | None:
    """A "not selected" verdict when ``run`` measured a selection that leaves out one of the finding's cases."""
    if not run.get("selection") or run.get("selected_cases") is None:
        return None
    left_out = [case for case in finding.cases if case not in set(run["selected_cases"])]
    if not left_out:
        return None
    return Verdict(finding, "not selected", None, None, None, None, None, None, None, 0,
                   "not in this run's selection: " + ", ".join(left_out))


def required_failures(verdicts: list[Verdict]) -> list[Verdict]:
    """Required findings that failed."""
    return [v for v in verdicts if v.finding.required and v.status == "fail"]


def required_unsettled(verdicts: list[Verdict]) -> list[Verdict]:
    """Required findings that could not be judged: inconclusive, not measured, or not applicable to this setup.
    None of them is a pass."""
    return [v for v in verdicts if v.finding.required and v.status in ("inconclusive", "not measured", "not applicable")]
