"""Several load generators, without a server: splitting c, merging ab's reports, --generators auto, the model's
ab bound over N cores, Locust's stats as a report, and a case marked "bound: load generator" in the report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from synthetic import make_record, make_run, write_folder

from loadtests.ab import AbResult
from loadtests.generators import AUTO_SHARE, GeneratorUse, generator_count, merge_results, pooled_percentiles, split
from loadtests.locust_load import locust_result
from loadtests.model import ServerShape, cpu_bounds
from loadtests.report import write_report
from loadtests.results import Record
from loadtests.summary import GENERATOR_BOUND, summarise
from loadtests.work import CpuPerRequest


def ab_result(complete: int, failed: int = 0, mean_ms: float = 10.0, seconds: float = 2.0, c: int = 20) -> AbResult:
    return AbResult(complete=complete, failed=failed, non_2xx=0, failed_connect=0, failed_receive=0, failed_length=0,
                    failed_exceptions=failed, requests_per_second=complete / seconds, successful=complete - failed,
                    successful_per_second=(complete - failed) / seconds, total_seconds=seconds, mean_ms=mean_ms,
                    p50_ms=mean_ms, p90_ms=mean_ms, p99_ms=mean_ms, max_ms=mean_ms, concurrency=c, requests=complete,
                    keepalive=False)


def with_generators(record: Record, cpu: list[float]) -> Record:
    record["engine"] = "ab"
    record["generators"] = GeneratorUse("ab", len(cpu), tuple(cpu), "pooled per-request times", tuple(cpu)).to_dict()
    return record


def test_c_is_split_as_evenly_as_whole_clients_allow() -> None:
    assert split(40, 3) == [14, 13, 13]
    assert split(2, 2) == [1, 1]
    assert sum(split(101, 4)) == 101
    with pytest.raises(ValueError):
        split(1, 2)


def test_reports_merge_by_summing_counts_and_pooling_request_times_never_averaging_percentiles() -> None:
    fast, slow = ab_result(900, failed=3, mean_ms=2.0), ab_result(100, mean_ms=20.0)
    times = [2.0] * 900 + [20.0] * 100
    merged = merge_results([fast, slow], times)
    assert (merged.complete, merged.failed, merged.successful, merged.concurrency) == (1000, 3, 997, 40)
    assert merged.mean_ms == pytest.approx(3.8)  # weighted by requests, not the mean of the two means (11)
    # The pooled p90 is the fast process's; an average of the two p90s would say 11 ms.
    assert (merged.p50_ms, merged.p90_ms, merged.p99_ms, merged.max_ms) == (2.0, 2.0, 20.0, 20.0)
    assert merge_results([fast], None) is fast
    assert math.isnan(pooled_percentiles([])["p99_ms"])


def test_auto_keeps_each_generator_under_seventy_percent_of_a_core() -> None:
    # 10 000 rps at 0.1 ms of ab CPU each is one core of ab: two processes keep each at 50%.
    assert generator_count(40, 10_000, 1e-4, cores=8) == math.ceil(1.0 / AUTO_SHARE)
    assert generator_count(40, 1_000, 1e-4, cores=8) == 1
    assert generator_count(40, 100_000, 1e-4, cores=4) == 4  # at most one per core
    assert generator_count(3, 100_000, 1e-4, cores=8) == 3  # at most one per client
    assert generator_count(40, 10_000, None) == 1  # the calibration read no ab CPU: one, as before


def test_the_models_ab_bound_is_one_core_per_generator() -> None:
    shape = ServerShape(16, {}, cpu_count=2)
    cpu = CpuPerRequest(service_s=3e-4, postgres_s=None, client_s=1e-4, new_sessions=None)
    assert cpu_bounds(cpu, shape)["ab CPU"] == pytest.approx(10_000)
    assert cpu_bounds(cpu, shape, generators=3)["ab CPU"] == pytest.approx(30_000)


def test_a_generator_asking_for_a_full_core_is_the_bottleneck() -> None:
    busy = GeneratorUse("ab", 2, (0.95, 0.5), "pooled")
    assert busy.saturated and busy.to_dict()["saturated"] is True
    assert GeneratorUse("ab", 2, (0.6, 0.5), "pooled").saturated is False
    assert GeneratorUse("locust", 2, (None, None), "locust").saturated is None
    # On cores shared with the service: 60% of a core run, 35% waiting for one, so it never waited for an answer.
    assert GeneratorUse("locust", 1, (0.6,), "locust", demand=(0.95,)).saturated is True
    assert GeneratorUse("locust", 1, (0.6,), "locust", demand=(0.65,)).saturated is False


def test_locusts_pooled_stats_fill_the_same_fields_as_abs_report() -> None:
    answer = {"requests": 1000, "failures": 4, "mean_ms": 5.5, "p50_ms": 5, "p90_ms": 8, "p99_ms": 20, "max_ms": 31}
    result = locust_result(answer, 40, False, 2e9)
    assert (result.complete, result.failed, result.successful, result.non_2xx) == (1000, 4, 996, 0)
    assert result.successful_per_second == pytest.approx(498)
    assert (result.p50_ms, result.p99_ms, result.concurrency) == (5.0, 20.0, 40)
    assert math.isnan(locust_result({"requests": 0, "failures": 0}, 2, False, 1e9).p50_ms)


def test_a_case_its_generators_bound_is_marked_in_the_case_tables_and_the_load_section(tmp_path: Path) -> None:
    records = [with_generators(make_record("wait/sync/time", round=r), [0.97, 0.93]) for r in range(3)]
    records += [with_generators(make_record("wait/async/asyncio", round=r), [0.2, 0.21]) for r in range(3)]
    [bound, free] = summarise(records)
    assert bound.bound == GENERATOR_BOUND and bound.generators is not None and bound.generators.cpu == (0.97, 0.93)
    assert free.bound != GENERATOR_BOUND
    text = write_report(write_folder(tmp_path / "run", records, make_run(records, load={"engine": "ab", "generators": 2}))).read_text()
    assert "## Load generators" in text and "2 processes per sample splitting c" in text
    row = next(line for line in text.splitlines() if line.startswith("| `wait/sync/time` | 40 | ab | 2 |"))
    assert "0.97 · 0.93 | 0.97 · 0.93" in row and row.endswith("| load generator |")
    assert "bound: load generator (2 ab processes, the busiest asking for 97% of a core)" in text
    finding = next(line for line in text.splitlines() if line.startswith("| F2-wait |"))
    assert "bound: load generator (wait/sync/time): the ratio is the generators'" in finding
