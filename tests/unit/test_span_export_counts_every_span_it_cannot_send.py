"""The span exporter against a real OTLP receiver on loopback: spans still queued when it
stops are sent, even behind a slow collector; a batch refused for a while (429, 502-504)
is sent again, one rejected (400) is not; the ones it cannot send (collector down, queue
full, rejected) are counted and said in the log, once each time it happens."""

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import pytest

from proxy.events import RequestEvent
from proxy.otlp import BATCH, FIRST_RETRY_S, MAX_QUEUED, MAX_RETRY_S, SpanExporter, retry_delay
from tests.otlp_receiver import OtlpReceiver
from tests.support import free_port


def sampled(count: int) -> list[RequestEvent]:
    events = []
    for n in range(count):
        event = RequestEvent(ts=1_700_000_000.0 + n, id=f"web-1:{n}", direction="outbound",
                             src_addr="127.0.0.1:5000", method="GET", path="/items",
                             dst_service="api", status=200, latency_ms=1.5)
        event.trace_id, event.span_id = f"{n + 1:032x}", f"{n + 1:016x}"
        events.append(event)
    return events


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.answering.set()
    receiver.stop()


def warnings(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


async def test_spans_queued_at_stop_reach_a_slow_collector(receiver: OtlpReceiver) -> None:
    exporter = SpanExporter(receiver.endpoint, {"service.name": "web"})
    exporter.start()
    receiver.answering.clear()
    for event in sampled(600):  # a full batch leaves at once; the rest waits behind it
        exporter.observe(event)
    assert await asyncio.to_thread(receiver.posted.wait, 10)
    closing = asyncio.ensure_future(exporter.close())
    await asyncio.sleep(0)  # the stop is under way while the collector holds its answer
    receiver.answering.set()
    await closing
    assert sorted(int(s["spanId"], 16) for s in receiver.spans) == list(range(1, 601))
    assert exporter.dropped == 0


async def test_spans_a_stopped_collector_never_got_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = SpanExporter(f"http://127.0.0.1:{free_port()}/v1/traces", {})
    exporter.start()
    for event in sampled(1500):
        exporter.observe(event)
    with caplog.at_level(logging.INFO, logger="vmesh.proxy.tracing"):
        await exporter.close()
    assert exporter.dropped == 1500
    [refused] = warnings(caplog, "tracing_export_failed")
    [cut] = warnings(caplog, "tracing_export_cut")
    assert refused.levelno == cut.levelno == logging.WARNING
    assert cut.dropped == 1500  # type: ignore[attr-defined]  # the refused batch waited too


async def test_a_full_queue_drops_spans_and_says_so_once(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = SpanExporter(receiver.endpoint, {})
    exporter.start()
    with caplog.at_level(logging.INFO, logger="vmesh.proxy.tracing"):
        for event in sampled(MAX_QUEUED + 100):  # faster than any collector: no await between
            exporter.observe(event)
        await exporter.close()
    assert exporter.dropped == 100
    assert len(receiver.spans) == MAX_QUEUED
    assert len(warnings(caplog, "tracing_queue_full")) == 1
    assert len(warnings(caplog, "tracing_export_resumed")) == 1


@pytest.mark.parametrize(("status", "headers"), [
    (429, {"retry-after": "1"}),  # throttled: again once the collector says so
    (503, {}),  # unavailable: again after a backoff
    (502, {}),
    (504, {}),
])
async def test_a_collector_that_is_briefly_unavailable_gets_the_batch_again(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture, status: int,
    headers: dict[str, str],
) -> None:
    receiver.refuse_next(status, headers)
    exporter = SpanExporter(receiver.endpoint, {})
    exporter.start()
    with caplog.at_level(logging.INFO, logger="vmesh.proxy.tracing"):
        for event in sampled(BATCH):  # a full batch: it leaves at once
            exporter.observe(event)
        assert await asyncio.to_thread(wait_for, lambda: len(receiver.spans) == BATCH)
        await exporter.close()
    assert exporter.dropped == 0
    assert receiver.posts == 2  # the refused batch, then the same batch again
    [unavailable] = warnings(caplog, "tracing_export_failed")
    assert str(status) in unavailable.detail  # type: ignore[attr-defined]
    assert len(warnings(caplog, "tracing_export_resumed")) == 1


async def test_a_batch_the_collector_rejects_is_dropped_and_the_next_one_still_sent(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.refuse_next(400)  # a collector that will never take this batch
    exporter = SpanExporter(receiver.endpoint, {})
    exporter.start()
    with caplog.at_level(logging.INFO, logger="vmesh.proxy.tracing"):
        for event in sampled(BATCH + 10):
            exporter.observe(event)
        await exporter.close()
    assert exporter.dropped == BATCH
    assert sorted(int(s["spanId"], 16) for s in receiver.spans) == list(
        range(BATCH + 1, BATCH + 11))
    [rejected] = warnings(caplog, "tracing_export_rejected")
    assert rejected.status == 400  # type: ignore[attr-defined]


def wait_for(predicate: Callable[[], bool], within: float = 20.0) -> bool:
    """True once `predicate` holds (polled on a thread, off the event loop), False after
    `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize(("retry_after", "previous", "wait"), [
    ("7", None, 7.0),  # the collector's word, in seconds
    ("Fri, 01 Jan 2100 00:00:00 GMT", None, MAX_RETRY_S),  # a date: never past the cap
    ("Thu, 01 Jan 1970 00:00:00 GMT", None, FIRST_RETRY_S),  # a date gone by: not at once
    ("0", None, FIRST_RETRY_S),  # nor a busy loop
    ("soon", 4.0, 8.0),  # not a Retry-After: the backoff's next step
    (None, None, FIRST_RETRY_S),
    (None, FIRST_RETRY_S, FIRST_RETRY_S * 2),
    (None, MAX_RETRY_S, MAX_RETRY_S),
])
def test_the_next_try_waits_as_the_collector_asks_within_bounds(
    retry_after: str | None, previous: float | None, wait: float,
) -> None:
    assert retry_delay(retry_after, previous) == wait


async def test_a_batch_too_large_for_the_collector_is_sent_in_smaller_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = OtlpReceiver(max_body=100_000).start()  # about 128 of these spans
    try:
        exporter = SpanExporter(receiver.endpoint, {})
        exporter.start()
        with caplog.at_level(logging.INFO, logger="vmesh.proxy.tracing"):
            for event in sampled(BATCH):
                exporter.observe(event)
            await exporter.close()
    finally:
        receiver.stop()
    assert exporter.dropped == 0
    assert sorted(int(s["spanId"], 16) for s in receiver.spans) == list(range(1, BATCH + 1))
    halved = [r.spans for r in warnings(caplog, "tracing_batch_smaller")]  # type: ignore[attr-defined]
    assert halved == [BATCH // 2 ** n for n in range(1, len(halved) + 1)]


async def test_spans_a_collector_took_only_in_part_are_counted_as_rejected(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.refuse_next(200, body={"partialSuccess": {"rejectedSpans": "3",
                                                       "errorMessage": "3 spans too old"}})
    exporter = SpanExporter(receiver.endpoint, {})
    exporter.start()
    with caplog.at_level(logging.INFO, logger="vmesh.proxy.tracing"):
        for event in sampled(10):
            exporter.observe(event)
        await exporter.close()
    assert exporter.dropped == 3
    [rejected] = warnings(caplog, "tracing_export_rejected")
    assert rejected.detail == "3 spans too old"  # type: ignore[attr-defined]
