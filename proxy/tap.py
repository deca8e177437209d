"""Live tap: request events streamed to subscribers, filtered at the source.

The hub is on the event bus only while someone taps, so an untapped proxy
pays nothing. Each subscriber has a bounded feed and a rate limit; a slow or
greedy subscriber loses events (and is told how many) but never slows traffic.
Feeds carry the events themselves: a reader formats its batch as it writes it
(`RequestEvent.tap_line`, once per event however many read it), off the request
path and in one go, which costs half as much as a line made per request.
"""

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from proxy.events import EventBus, RequestEvent
from proxy.feed import BoundedFeed
from vm_mesh.redaction import redacted_target

DEFAULT_MAX_RATE = 1000.0  # events per second per subscriber
MAX_RATE = 10_000.0  # the most a subscriber may ask for


def max_rate(query: Mapping[str, str]) -> float:
    """The events a second the tap's `rate` asks for (default `DEFAULT_MAX_RATE`), within 1 and
    `MAX_RATE`; ValueError for a rate that is no number."""
    text = query.get("rate")
    if text is None:
        return DEFAULT_MAX_RATE
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if math.isnan(rate):
        raise ValueError(f"rate {text!r}: expected events a second, like 100")
    return max(1.0, min(rate, MAX_RATE))


@dataclass(frozen=True, slots=True)
class TapFilter:
    """Server-side filters of `/v1/tap`; an unset field matches everything."""

    service: str | None = None
    path_prefix: str | None = None
    method: str | None = None
    status: str | None = None  # an exact code (`503`) or a class (`5xx`)
    min_latency_ms: float | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> "TapFilter":
        """Build from query parameters; ValueError names the parameter that is wrong."""
        unknown = set(query) - {"service", "path", "method", "status", "min_latency_ms", "rate"}
        if unknown:
            raise ValueError(f"unknown tap filter {sorted(unknown)[0]!r}")
        status = query.get("status")
        if status is not None and not (
            (status.isdigit() and len(status) == 3)
            or (len(status) == 3 and status[0].isdigit() and status[1:].lower() == "xx")
        ):
            raise ValueError(f"status {status!r}: expected a code like 503 or a class like 5xx")
        min_latency = query.get("min_latency_ms")
        try:
            min_latency_ms = float(min_latency) if min_latency is not None else None
        except ValueError:
            raise ValueError(f"min_latency_ms {min_latency!r} is not a number") from None
        return cls(
            service=query.get("service") or None,
            path_prefix=query.get("path") or None,
            method=(query.get("method") or "").upper() or None,
            status=status.lower() if status else None,
            min_latency_ms=min_latency_ms,
        )

    def matches(self, event: RequestEvent) -> bool:
        if self.service and self.service not in (event.dst_service, event.service):
            return False
        # the path as the tap shows it: a filter cannot probe a query value it never shows
        if self.path_prefix and not (redacted_target(event.path) or "").startswith(
            self.path_prefix
        ):
            return False
        if self.method and event.method != self.method:
            return False
        if self.status:
            code = str(event.status) if event.status is not None else ""
            if self.status.endswith("xx"):
                if not code.startswith(self.status[0]):
                    return False
            elif code != self.status:
                return False
        return not (self.min_latency_ms is not None and event.latency_ms < self.min_latency_ms)


class TapSubscription:
    """One tap client: its filter, its feed of events, and its rate limit."""

    def __init__(
        self,
        tap_filter: TapFilter,
        capacity: int,
        max_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.filter = tap_filter
        self._filtering = tap_filter != TapFilter()  # an empty filter passes every event
        self.feed: BoundedFeed[RequestEvent] = BoundedFeed(capacity)
        self._max_rate = max_rate
        self._clock = clock
        self._allowance = max_rate
        self._last = clock()

    def admits(self, event: RequestEvent) -> bool:
        """Whether `event` passes the filter and the rate limit (a refusal is counted)."""
        if self._filtering and not self.filter.matches(event):
            return False
        now = self._clock()
        self._allowance = min(self._max_rate, self._allowance + (now - self._last) * self._max_rate)
        self._last = now
        if self._allowance < 1.0:
            self.feed.drop()
            return False
        self._allowance -= 1.0
        return True


class TapHub:
    """Fans request events out to tap subscribers; off the bus when nobody taps."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._subscriptions: list[TapSubscription] = []
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(
        self, tap_filter: TapFilter, capacity: int = 1000, max_rate: float = DEFAULT_MAX_RATE
    ) -> TapSubscription:
        subscription = TapSubscription(tap_filter, capacity, max_rate)
        self._subscriptions.append(subscription)
        if self._unsubscribe is None:
            self._unsubscribe = self._bus.subscribe(self._publish)
        return subscription

    def unsubscribe(self, subscription: TapSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        if not self._subscriptions and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _publish(self, event: RequestEvent) -> None:
        for subscription in self._subscriptions:
            if subscription.admits(event):
                subscription.feed.offer(event)
