"""The span exporter against a real OTLP receiver on loopback: spans still queued when it
stops are sent, even behind a slow collector; the ones it cannot send (collector down,
queue full) are counted and said in the log, once each time it happens."""

import asyncio
import logging
from collections.abc import Iterator

import pytest

from proxy.events import RequestEvent
from proxy.otlp import MAX_QUEUED, SpanExporter
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
    assert cut.dropped == 1500 - 512  # type: ignore[attr-defined]  # after the refused batch


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
