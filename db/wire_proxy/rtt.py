"""The one knob: how many milliseconds of round trip to add, and what is accepted."""

from __future__ import annotations

import math

#: The largest RTT the proxy adds: a database on another continent; beyond that, not a benchmark.
MAX_RTT_MS = 100.0


def parse_rtt_ms(text: str) -> float:
    """``text`` as an RTT in milliseconds, 0 <= RTT <= MAX_RTT_MS; ValueError with a readable reason."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"--db-rtt must be a number of milliseconds, not {text!r}")
    if value < 0:
        raise ValueError(f"--db-rtt must be a number of milliseconds >= 0, not {text!r}")
    if value > MAX_RTT_MS:
        raise ValueError(f"--db-rtt {text} is over the maximum of {MAX_RTT_MS:g} ms")
    return value
