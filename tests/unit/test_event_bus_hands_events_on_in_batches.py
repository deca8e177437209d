"""The proxy's event bus holds request events and hands them on in batches, losing none."""

import asyncio

from proxy.events import EventBus, RequestEvent


def _event(number: int) -> RequestEvent:
    return RequestEvent(ts=0, id=str(number), direction="outbound", src_addr="a")


async def test_events_reach_each_subscriber_a_batch_at_a_time_in_order() -> None:
    bus = EventBus(batch=3, delay=60)
    first: list[str] = []
    second: list[str] = []
    bus.subscribe(lambda event: first.append(event.id))
    bus.subscribe(lambda event: second.append(event.id))
    for number in range(5):
        bus.publish(_event(number))
    assert first == second == ["0", "1", "2"]
    bus.flush()
    assert first == second == ["0", "1", "2", "3", "4"]


async def test_a_held_event_is_handed_on_after_the_delay() -> None:
    bus = EventBus(batch=100, delay=0.01)
    arrived = asyncio.Event()
    seen: list[str] = []
    bus.subscribe(lambda event: (seen.append(event.id), arrived.set()))
    bus.publish(_event(1))
    assert seen == []
    await asyncio.wait_for(arrived.wait(), 5)
    assert seen == ["1"]


async def test_subscribers_get_exactly_what_was_published_while_they_listened() -> None:
    bus = EventBus(batch=100, delay=60)
    early: list[str] = []
    late: list[str] = []
    stop_early = bus.subscribe(lambda event: early.append(event.id))
    bus.publish(_event(1))
    bus.subscribe(lambda event: late.append(event.id))
    bus.publish(_event(2))
    stop_early()
    bus.publish(_event(3))
    bus.flush()
    assert early == ["1", "2"]
    assert late == ["2", "3"]


def test_a_bus_without_batches_hands_each_event_on_at_once() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe(lambda event: seen.append(event.id))
    bus.publish(_event(1))
    assert seen == ["1"]
