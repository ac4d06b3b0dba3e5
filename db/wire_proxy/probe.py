"""Measure the round trip the proxy adds, as a client sees it."""

from __future__ import annotations

import statistics
import time

import psycopg


def median_round_trip_ms(url: str, samples: int = 30) -> float:
    """Median time of ``SELECT 1`` on one autocommit connection to ``url``, in ms (connecting not included)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        connection.execute("SELECT 1")
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            connection.execute("SELECT 1").fetchone()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def added_rtt_ms(direct_url: str, proxied_url: str, samples: int = 30) -> float:
    """How much longer a round trip takes through the proxy than straight to the database, in ms."""
    return median_round_trip_ms(proxied_url, samples) - median_round_trip_ms(direct_url, samples)
