"""Golden metrics computed in the proxy: rps, success rate and latency percentiles per route.

Counts are kept in one-second buckets per (direction, service, route), each
with a histogram of its latencies in log-spaced bins (`GROWTH` apart, so a
percentile is within 2 % of the latency it stands for), so memory stays flat
at any rate and `/v1/stats?window=60s` needs no Prometheus. Answering merges
at most `MAX_WINDOW_S` small histograms per row, whatever the rate: a busy
proxy's ten-minute window costs milliseconds, not a sort of every sample. A
proxy up for less than the window gives its rate over the time it has been
up, so a new or restarted proxy does not show a fraction of its traffic. Each
row also carries a small quantile sketch of its latencies, so a client can
combine instances into one service's percentiles (quantiles of the parts do
not add up), and the requests of its route that are in flight: counted from
the moment the request is routed (`started`) until its event is recorded, so
at any answer a request is either in flight or among the completed, never
both or neither. Series idle for the whole window are forgotten, and at most
`MAX_SERIES` exist at once (requests for yet more services, e.g. unknown
`Host` values, are counted under `other`), so memory stays flat whatever
clients send too.
"""

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from proxy.events import RequestEvent
from vm_mesh.quantiles import Weighted, weighted_percentile
from vm_mesh.rates import rate_span, window_start

MAX_WINDOW_S = 600
MAX_SERIES = 1024
SKETCH_POINTS = 100  # latencies per row in `latency_sketch_ms`
OVERFLOW = "other"
GROWTH = 1.04  # a latency bin's upper bound over its lower one
_LOG_GROWTH = math.log(GROWTH)
_FLOOR_MS = 0.001  # shorter latencies share this one's bin

Key = tuple[str, str, str]  # direction, service, route


def latency_bin(latency_ms: float) -> int:
    """The histogram bin of a latency: bin `i` holds [GROWTH**i, GROWTH**(i + 1)) ms."""
    return math.floor(math.log(max(latency_ms, _FLOOR_MS)) / _LOG_GROWTH)


def bin_latency(index: int) -> float:
    """The latency a bin stands for: its geometric middle (within 2 % of all it holds), to
    four significant digits."""
    return float(f"{GROWTH ** (index + 0.5):.4g}")


class Series:
    """One (direction, service, route) row: its one-second buckets, oldest first, and its
    requests in flight."""

    __slots__ = ("buckets", "in_flight")

    def __init__(self) -> None:
        self.buckets: deque[_Bucket] = deque()
        self.in_flight = 0

    def idle_since(self, second: float) -> bool:
        """No request in flight and none completed after `second`."""
        buckets = self.buckets
        return not self.in_flight and (not buckets or buckets[-1].second <= second)


class _Bucket:
    """One second of one series: its counts and its latency histogram (bin -> requests)."""

    __slots__ = ("latencies", "requests", "second", "successes")

    def __init__(self, second: int) -> None:
        self.second = second
        self.requests = 0
        self.successes = 0
        self.latencies: dict[int, int] = {}

    def add(self, latency_ms: float, success: bool) -> None:
        self.requests += 1
        self.successes += success
        index = latency_bin(latency_ms)
        self.latencies[index] = self.latencies.get(index, 0) + 1


def is_success(event: RequestEvent) -> bool:
    """Success as Linkerd counts it: a response below 500 and no proxy error."""
    return event.error is None and event.status is not None and event.status < 500


def quantile_sketch(weighted: Weighted, points: int = SKETCH_POINTS) -> list[float]:
    """At most `points` latencies that each stand for an equal share of the requests (the
    value in the middle of each share), so that the sketches of several instances, weighted
    by their request counts, give the percentiles of all their requests together."""
    if len(weighted) <= points and all(weight == 1 for _, weight in weighted):
        return [round(value, 3) for value, _ in weighted]
    total = sum(weight for _, weight in weighted)
    sketch = []
    seen, index = weighted[0][1], 0
    for k in range(points):
        goal = (2 * k + 1) * total / (2 * points)
        while seen < goal and index + 1 < len(weighted):
            index += 1
            seen += weighted[index][1]
        sketch.append(round(weighted[index][0], 3))
    return sketch


def _weighted_latencies(buckets: list[_Bucket]) -> list[tuple[float, float]]:
    """The buckets' histograms merged: (latency, requests) per bin, sorted by latency."""
    merged: dict[int, int] = {}
    for bucket in buckets:
        for index, count in bucket.latencies.items():
            merged[index] = merged.get(index, 0) + count
    return [(bin_latency(index), float(merged[index])) for index in sorted(merged)]


class WindowedStats:
    """Per-route golden metrics over a sliding window of up to ten minutes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._series: dict[Key, Series] = {}

    def started(self, event: RequestEvent) -> None:
        """Count `event`'s request as in flight on its row until `record` gets the event;
        called once the request is routed (its service and route are known). The row is
        looked up here, not in `_series_of`, for every request makes this call."""
        service = event.service or event.dst_service or event.authority or "-"
        series = self._series.get((event.direction, service, event.route))
        if series is None:
            series = self._series_of(event)
        series.in_flight += 1
        event.stats_row = series

    def record(self, event: RequestEvent) -> None:
        """EventBus subscriber: HTTP requests only (TCP connections have no method)."""
        if event.method is None:
            return
        series = event.stats_row
        if series is None:
            series = self._series_of(event)
        else:
            series.in_flight -= 1
        second = int(self._clock())
        buckets = series.buckets
        if not buckets or buckets[-1].second != second:
            buckets.append(_Bucket(second))
            while buckets and buckets[0].second <= second - MAX_WINDOW_S:
                buckets.popleft()
        buckets[-1].add(event.response_ms, is_success(event))

    def _series_of(self, event: RequestEvent) -> Series:
        """The row of `event`'s direction, service and route, made if need be (under
        `OVERFLOW` when `MAX_SERIES` rows exist and none is idle)."""
        service = event.service or event.dst_service or event.authority or "-"
        key = (event.direction, service, event.route)
        series = self._series.get(key)
        if series is None:  # a new series (not one made per request for setdefault)
            if len(self._series) >= MAX_SERIES:
                self._forget_idle(self._clock())
                if len(self._series) >= MAX_SERIES:
                    key = (event.direction, OVERFLOW, OVERFLOW)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = Series()
        return series

    def _forget_idle(self, now: float) -> None:
        """Drop series with nothing in flight and no request in the last `MAX_WINDOW_S`
        seconds."""
        since = now - MAX_WINDOW_S
        idle = [key for key, series in self._series.items() if series.idle_since(since)]
        for key in idle:
            del self._series[key]

    def snapshot(self, window_s: float) -> list[dict[str, Any]]:
        """One row per (direction, service, route) active in the last `window_s` seconds or
        with requests in flight now."""
        window_s = min(max(window_s, 1.0), MAX_WINDOW_S)
        now = self._clock()
        self._forget_idle(now)
        first = window_start(now, window_s)
        span = rate_span(now, window_s, self._started)
        rows = []
        for (direction, service, route), series in self._series.items():
            recent = [b for b in series.buckets if b.second >= first]
            requests = sum(b.requests for b in recent)
            if not requests and not series.in_flight:
                continue
            latencies = _weighted_latencies(recent)
            successes = sum(b.successes for b in recent)
            rows.append(
                {
                    "direction": direction,
                    "service": service,
                    "route": route,
                    "requests": requests,
                    "rps": round(requests / span, 3),
                    "success_rate": round(successes / requests, 4) if requests else None,
                    "p50_ms": weighted_percentile(latencies, 0.50),
                    "p95_ms": weighted_percentile(latencies, 0.95),
                    "p99_ms": weighted_percentile(latencies, 0.99),
                    "latency_sketch_ms": quantile_sketch(latencies),
                    "in_flight": series.in_flight,
                }
            )
        return sorted(rows, key=lambda r: (r["direction"], r["service"], r["route"]))
