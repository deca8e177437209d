"""The tap hub filters at the source, bounds each reader, and leaves the bus when idle."""

import asyncio
import json

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
    paths = [json.loads(event.tap_line())["path"] for event in items]
    assert paths == [f"/items/{i}" for i in range(15, 25)]


async def test_rate_limit_drops_the_excess() -> None:
    bus = EventBus()
    hub = TapHub(bus)
    subscription = hub.subscribe(TapFilter(), capacity=1000, max_rate=5)
    for _ in range(50):
        bus.publish(_event())
    items, dropped = await asyncio.wait_for(subscription.feed.batch(), 5)
    assert len(items) + dropped == 50
    assert len(items) <= 6


async def test_an_event_is_formatted_once_by_its_readers_not_when_published() -> None:
    bus = EventBus()
    hub = TapHub(bus)
    event = RequestEvent(ts=0, id="1", direction="outbound", src_addr="a",
                         dst_service="store", method="GET", path="/items/1", status=200)
    other = hub.subscribe(TapFilter(service="billing"))
    first = hub.subscribe(TapFilter(service="store"))
    second = hub.subscribe(TapFilter())
    bus.publish(event)
    assert event._line is None  # nothing formatted on the request path
    lines = []
    for subscription in (first, second):
        [taken], _ = await subscription.feed.batch()
        lines.append(taken.tap_line())
    assert json.loads(lines[0])["path"] == "/items/1"
    assert lines[0] is lines[1]  # formatted once, for both readers
    hub.unsubscribe(other)


@pytest.mark.parametrize(
    "text",
    ['/a"b\\c', "/tab\there/newline\n", "/\x00\x1f\x7f", "/caf\u00e9/\u2028/\U0001f600", ""],
)
def test_a_tap_line_is_the_json_of_the_tap_event(text: str) -> None:
    """Whatever a client puts in a request, its tap line parses back to the DESIGN event."""
    full = RequestEvent(
        ts=1764640000.123456, id="0af7651916cd43dd", direction="inbound", src_addr="10.0.0.1:4",
        src_id="spiffe://vmesh.local/svc/front", dst_service="store", dst_instance="store-1",
        dst_addr="127.0.0.1:8080", dst_id="spiffe://vmesh.local/svc/store", tls=True,
        method=f"GET{text}", authority=f"store{text}", path=text, route=f"r{text}", status=503,
        latency_ms=12.34567, bytes_in=10, bytes_out=2000, retries=2, policy_decision="deny",
        policy_rule=f"rule{text}", error=f"app.timeout: {text}", trace_id=f"t{text}",
    )
    bare = RequestEvent(ts=0, id=text, direction="outbound", src_addr=text)
    for event in (full, bare):
        line = event.tap_line()
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line) == event.to_tap()
