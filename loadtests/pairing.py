"""Ratios of two cases measured side by side: the one way every comparison in a report is made.

Within a block (``plan``) a round measures each case once or more, compared pairs adjacent in
the sequence. The ratio of a round is the mean log ratio over its adjacent samples of the two
cases (a round that has them apart uses its closest pair); the rounds then give a paired
t-interval (``stats.log_ratio_interval``). Each round counts once, however many adjacent
samples it has, so samples that share a moment are summarised before the interval.

Two cases that never share a block are compared through the reference case each block holds
(``plan.reference``): a/b = (a/r) / (b/r), the two sides independent (``stats.chained_interval``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from loadtests.plan import reference
from loadtests.results import Record
from loadtests.stats import CONFIDENCE, Interval, chained_interval, log_ratio_interval

Value = Callable[[Record], float | None]


@dataclass(frozen=True)
class Comparison:
    """a/b with its interval, how it was formed, and over how many rounds."""

    interval: Interval
    rounds: int
    #: None: the two cases side by side; else the reference case both were measured beside.
    through: str | None
    #: The per-round log ratios (for a chained comparison, those of a/r).
    log_ratios: tuple[float, ...]


def round_log_ratios(records: Iterable[Record], numerator: str, denominator: str, value: Value) -> dict[tuple[str, int], float]:
    """Per (block, round): the mean of log(a/b) over the round's adjacent samples of the two cases."""
    found: dict[tuple[str, int], tuple[list[tuple[int, float]], list[tuple[int, float]]]] = {}
    for record in records:
        side = 0 if record["case"] == numerator else 1 if record["case"] == denominator else None
        measured = value(record) if side is not None else None
        if side is None or measured is None or measured <= 0:
            continue
        key = (str(record.get("block") or ""), int(record.get("round", 0)))
        found.setdefault(key, ([], []))[side].append((int(record.get("position") or 0), math.log(measured)))
    ratios = {}
    for key, (tops, bottoms) in found.items():
        if not tops or not bottoms:
            continue
        distances = [(abs(pa - pb), a - b) for pa, a in tops for pb, b in bottoms]
        closest = min(distance for distance, _ in distances)
        near = [ratio for distance, ratio in distances if distance == closest]
        ratios[key] = sum(near) / len(near)
    return ratios


def compare(records: list[Record], numerator: str, denominator: str, value: Value,
            confidence: float = CONFIDENCE) -> Comparison | None:
    """``numerator`` over ``denominator`` on ``records`` (already narrowed to one concurrency and setup)."""
    direct = round_log_ratios(records, numerator, denominator, value)
    if len(direct) >= 2 or (direct and not _chainable(records, numerator, denominator)):
        logs = tuple(direct[key] for key in sorted(direct))
        found = log_ratio_interval(logs, confidence)
        return Comparison(found, len(logs), None, logs) if found else None
    ref = reference(numerator.split("/", 1)[0])
    a, b = round_log_ratios(records, numerator, ref, value), round_log_ratios(records, denominator, ref, value)
    chained = chained_interval(list(a.values()), list(b.values()), confidence)
    if chained is None:
        return None
    return Comparison(chained, min(len(a), len(b)), ref, tuple(a.values()))


def _chainable(records: list[Record], numerator: str, denominator: str) -> bool:
    ref = reference(numerator.split("/", 1)[0])
    return any(r["case"] == ref for r in records) and numerator != ref and denominator != ref
