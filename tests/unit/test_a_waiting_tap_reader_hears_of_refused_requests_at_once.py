"""A tap reader waiting for events is told at once of requests its rate limit refused, even
when no admitted request follows them (traffic may have stopped)."""

import asyncio

from proxy.events import EventBus, RequestEvent
from proxy.tap import TapFilter, TapHub


def _event(i: int) -> RequestEvent:
    return RequestEvent(ts=0, id=str(i), direction="inbound", src_addr="a", dst_service="api",
                        method="GET", path=f"/items/{i}", status=200)


async def test_refused_requests_wake_a_waiting_reader() -> None:
    bus = EventBus()
    subscription = TapHub(bus).subscribe(TapFilter(), max_rate=1)
    bus.publish(_event(1))  # takes the one event the limit allows this second
    items, dropped = await asyncio.wait_for(subscription.feed.batch(), 5)
    assert [e.id for e in items] == ["1"] and dropped == 0
    reader = asyncio.create_task(subscription.feed.batch())
    await asyncio.sleep(0)  # the reader now waits for the next batch
    bus.publish(_event(2))  # refused by the rate limit; nothing else comes
    bus.publish(_event(3))
    assert await asyncio.wait_for(reader, 5) == ([], 2)
