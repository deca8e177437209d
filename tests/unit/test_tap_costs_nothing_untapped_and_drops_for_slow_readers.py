"""The tap hub filters at the source, bounds each reader, and leaves the bus when idle."""

import asyncio

import pytest

from proxy.events import EventBus, RequestEvent
from proxy.tap import TapFilter, TapHub


def _event(
    path: str = "/items/1", status: int = 200, method: str = "GET", latency: float = 5.0
) -> RequestEvent:
    return RequestEvent(
        ts=0,
        id="1",
        direction="outbound",
        src_addr="a",
        dst_service="store",
        method=method,
        path=path,
        status=status,
        latency_ms=latency,
    )


def test_filters_select_requests() -> None:
    tap_filter = TapFilter.from_query(
        {
            "service": "store",
            "path": "/items",
            "method": "get",
            "status": "5xx",
            "min_latency_ms": "10",
        }
    )
    assert tap_filter.matches(_event(status=503, latency=20))
    assert not tap_filter.matches(_event(status=200, latency=20))
    assert not tap_filter.matches(_event(status=503, latency=2))
    assert not tap_filter.matches(_event(status=503, latency=20, path="/other"))
    assert not tap_filter.matches(_event(status=503, latency=20, method="PUT"))


@pytest.mark.parametrize("query", [{"status": "5x"}, {"min_latency_ms": "fast"}, {"colour": "x"}])
def test_bad_filters_are_refused(query: dict) -> None:
    with pytest.raises(ValueError):
        TapFilter.from_query(query)


async def test_hub_is_on_the_bus_only_while_someone_taps() -> None:
    bus = EventBus()
    hub = TapHub(bus)
    assert bus._subscribers == ()
    subscription = hub.subscribe(TapFilter())
    assert len(bus._subscribers) == 1
    hub.unsubscribe(subscription)
    assert bus._subscribers == ()


async def test_slow_reader_is_told_what_it_lost_and_never_blocks_publishing() -> None:
    bus = EventBus()
    hub = TapHub(bus)
    subscription = hub.subscribe(TapFilter(), capacity=10)
    for i in range(25):
        bus.publish(_event(path=f"/items/{i}"))
    items, dropped = await asyncio.wait_for(subscription.feed.batch(), 5)
    assert dropped == 15
    assert [item["path"] for item in items] == [f"/items/{i}" for i in range(15, 25)]


async def test_rate_limit_drops_the_excess() -> None:
    bus = EventBus()
    hub = TapHub(bus)
    subscription = hub.subscribe(TapFilter(), capacity=1000, max_rate=5)
    for _ in range(50):
        bus.publish(_event())
    items, dropped = await asyncio.wait_for(subscription.feed.batch(), 5)
    assert len(items) + dropped == 50
    assert len(items) <= 6


class _CountingEvent(RequestEvent):
    __slots__ = ()
    formatted = 0

    def to_tap(self) -> dict:
        _CountingEvent.formatted += 1
        return RequestEvent.to_tap(self)


async def test_an_event_is_formatted_once_and_only_when_a_tap_takes_it() -> None:
    bus = EventBus()
    hub = TapHub(bus)
    event = _CountingEvent(ts=0, id="1", direction="outbound", src_addr="a",
                           dst_service="store", method="GET", path="/items/1", status=200)
    other = hub.subscribe(TapFilter(service="billing"))
    bus.publish(event)
    assert _CountingEvent.formatted == 0
    first = hub.subscribe(TapFilter(service="store"))
    second = hub.subscribe(TapFilter())
    bus.publish(event)
    assert _CountingEvent.formatted == 1
    assert (await first.feed.batch())[0][0]["path"] == "/items/1"
    assert (await second.feed.batch())[0][0]["path"] == "/items/1"
    hub.unsubscribe(other)
