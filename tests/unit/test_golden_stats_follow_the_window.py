"""Per-route rps, success rate and percentiles over a sliding window, without sockets."""

import pytest

from proxy.events import RequestEvent
from proxy.stats import WindowedStats
from vm_mesh.quantiles import weighted_percentile


def approx(latency_ms: float) -> object:
    """A percentile stands for the latencies of its histogram bin: within 2 % of each (and
    rounded to four significant digits)."""
    return pytest.approx(latency_ms, rel=0.021)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _event(
    status: int | None = 200,
    latency: float = 10.0,
    route: str = "default",
    error: str | None = None,
) -> RequestEvent:
    return RequestEvent(
        ts=0,
        id="1",
        direction="inbound",
        src_addr="127.0.0.1:1",
        method="GET",
        dst_service="api",
        route=route,
        status=status,
        latency_ms=latency,
        error=error,
    )


def _ten_a_second(stats: WindowedStats, clock: Clock, seconds: int) -> None:
    """Ten requests in the middle of each of the next `seconds` seconds, one of them a 503;
    the clock is left at the end of the last second."""
    start = clock.now
    for second in range(seconds):
        clock.now = start + second + 0.5
        for _ in range(9):
            stats.record(_event(200))
        stats.record(_event(503))
    clock.now = start + seconds


def test_rps_and_success_rate_over_the_window() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock)
    _ten_a_second(stats, clock, 120)
    (row,) = stats.snapshot(10)
    assert row["requests"] == 100 and row["rps"] == 10.0
    assert row["success_rate"] == 0.9
    assert stats.snapshot(60)[0]["rps"] == 10.0


def test_a_proxy_up_for_less_than_the_window_gives_its_rate_since_it_started() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock)
    _ten_a_second(stats, clock, 20)
    (row,) = stats.snapshot(60)
    assert row["requests"] == 200 and row["rps"] == 10.0  # not 200 requests / 60 s


def test_old_requests_leave_the_window() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock)
    stats.record(_event())
    clock.now += 120
    assert stats.snapshot(60) == []
    assert stats.snapshot(600)[0]["requests"] == 1


def test_percentiles_use_nearest_rank_by_weight() -> None:
    values = [(float(v), 1.0) for v in range(1, 101)]
    assert weighted_percentile(values, 0.5) == 50.0
    assert weighted_percentile(values, 0.99) == 99.0
    assert weighted_percentile([(1.0, 1.0), (9.0, 3.0)], 0.5) == 9.0
    assert weighted_percentile([], 0.5) is None


def test_a_busy_second_weighs_in_the_percentiles_by_its_requests() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock)
    for _ in range(1000):  # an incident: one busy, slow second
        stats.record(_event(latency=100.0))
    for second in range(1, 60):  # then quiet, fast seconds
        clock.now = 1000.0 + second
        for _ in range(10):
            stats.record(_event(latency=1.0))
    (row,) = stats.snapshot(60)
    assert row["requests"] == 1590
    assert row["p50_ms"] == approx(100.0)  # 1000 of the 1590 requests took 100 ms
    assert row["p95_ms"] == approx(100.0)
    assert sum(v == approx(100.0) for v in row["latency_sketch_ms"]) == 63


def test_percentiles_are_within_two_percent_of_the_latencies() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock)
    latencies = [0.05 * 1.013**i for i in range(1000)]  # 0.05 ms to 20 s
    for latency in latencies:
        stats.record(_event(latency=latency))
    (row,) = stats.snapshot(10)
    assert row["p50_ms"] == approx(latencies[499])
    assert row["p95_ms"] == approx(latencies[949])
    assert row["p99_ms"] == approx(latencies[989])


def test_latency_histogram_stays_small_yet_representative() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock)
    for i in range(10_000):
        stats.record(_event(latency=1.0 if i % 10 else 100.0))
    (row,) = stats.snapshot(10)
    assert row["requests"] == 10_000
    assert row["p50_ms"] == approx(1.0) and row["p99_ms"] == approx(100.0)


def test_proxy_errors_count_as_failures_and_routes_are_separate() -> None:
    stats = WindowedStats(clock=Clock())
    stats.record(_event(status=None, error="upstream.connect_failed", route="a"))
    stats.record(_event(status=200, route="b"))
    rows = {r["route"]: r for r in stats.snapshot(60)}
    assert rows["a"]["success_rate"] == 0.0 and rows["b"]["success_rate"] == 1.0
