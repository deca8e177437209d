"""A stats row counts its requests in flight, from their routing to their record, and stays
while any is in flight, whether or not a request of it completed in the window."""

from proxy.events import RequestEvent
from proxy.stats import MAX_SERIES, MAX_WINDOW_S, OVERFLOW, WindowedStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _routed(stats: WindowedStats, service: str = "api") -> RequestEvent:
    event = RequestEvent(ts=0, id="1", direction="outbound", src_addr="a", method="GET",
                         service=service, route="default")
    stats.started(event)
    return event


def _answered(event: RequestEvent) -> RequestEvent:
    event.status = 200
    return event


def test_a_row_with_requests_in_flight_shows_before_any_completes() -> None:
    stats = WindowedStats(clock=Clock())
    first, _ = _routed(stats), _routed(stats)
    (row,) = stats.snapshot(60)
    assert (row["service"], row["in_flight"], row["requests"]) == ("api", 2, 0)
    assert row["success_rate"] is None and row["p99_ms"] is None
    stats.record(_answered(first))
    (row,) = stats.snapshot(60)
    assert (row["in_flight"], row["requests"], row["success_rate"]) == (1, 1, 1.0)


def test_a_row_with_a_request_in_flight_is_never_forgotten() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock)
    slow = _routed(stats)
    clock.now += MAX_WINDOW_S + 1
    assert [(r["in_flight"], r["requests"]) for r in stats.snapshot(60)] == [(1, 0)]
    stats.record(_answered(slow))
    assert [(r["in_flight"], r["requests"]) for r in stats.snapshot(60)] == [(0, 1)]


def test_a_request_counted_beyond_the_cap_leaves_the_other_row() -> None:
    stats = WindowedStats(clock=Clock())
    for i in range(MAX_SERIES):
        _routed(stats, f"svc-{i}")
    late = _routed(stats, "late")
    stats.record(_answered(late))
    other = [r for r in stats.snapshot(60) if r["service"] == OVERFLOW]
    assert [(r["in_flight"], r["requests"]) for r in other] == [(0, 1)]
