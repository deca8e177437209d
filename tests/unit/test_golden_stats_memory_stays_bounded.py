"""Golden stats forget idle series and cap how many exist, whatever Host values clients send."""

import tracemalloc

from proxy.events import RequestEvent
from proxy.stats import MAX_SERIES, MAX_WINDOW_S, OVERFLOW, WindowedStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _unresolved(authority: str) -> RequestEvent:
    # no destination service: the stats fall back to the client's Host value
    return RequestEvent(ts=0, id="1", direction="outbound", src_addr="a", method="GET",
                        authority=authority, status=503, error="no_endpoints")


def test_series_beyond_the_cap_are_counted_as_other() -> None:
    stats = WindowedStats(clock=Clock())
    for i in range(MAX_SERIES + 50):
        stats.record(_unresolved(f"random-{i}.example"))
    rows = stats.snapshot(60)
    assert len(rows) == MAX_SERIES + 1
    other = next(r for r in rows if r["service"] == OVERFLOW)
    assert other["requests"] == 50
    assert sum(r["requests"] for r in rows) == MAX_SERIES + 50


def test_idle_series_are_forgotten_and_make_room_again() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock)
    for i in range(MAX_SERIES):
        stats.record(_unresolved(f"old-{i}.example"))
    clock.now += MAX_WINDOW_S + 1
    stats.record(_unresolved("fresh.example"))
    rows = stats.snapshot(60)
    assert [r["service"] for r in rows] == ["fresh.example"]
    assert len(stats._series) == 1


def _held_bytes(rate: int) -> int:
    """What a minute of `rate` requests a second, over 20 distinct latencies, keeps allocated."""
    clock = Clock()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        stats = WindowedStats(clock=clock)
        for second in range(60):
            clock.now = 1000.0 + second
            for n in range(rate):
                stats.record(RequestEvent(ts=0, id="1", direction="inbound", src_addr="a",
                                          method="GET", dst_service="api", route="default",
                                          status=200, latency_ms=1.0 + n % 20))
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_request_rate() -> None:
    assert _held_bytes(5000) < 1.5 * _held_bytes(50)
