"""Golden stats forget idle series and cap how many exist, whatever Host values clients send."""

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
    stats = WindowedStats(clock=Clock(), seed=1)
    for i in range(MAX_SERIES + 50):
        stats.record(_unresolved(f"random-{i}.example"))
    rows = stats.snapshot(60)
    assert len(rows) == MAX_SERIES + 1
    other = next(r for r in rows if r["service"] == OVERFLOW)
    assert other["requests"] == 50
    assert sum(r["requests"] for r in rows) == MAX_SERIES + 50


def test_idle_series_are_forgotten_and_make_room_again() -> None:
    clock = Clock()
    stats = WindowedStats(clock=clock, seed=1)
    for i in range(MAX_SERIES):
        stats.record(_unresolved(f"old-{i}.example"))
    clock.now += MAX_WINDOW_S + 1
    stats.record(_unresolved("fresh.example"))
    rows = stats.snapshot(60)
    assert [r["service"] for r in rows] == ["fresh.example"]
    assert len(stats._series) == 1
