"""Spans of sampled traces, exported to an OpenTelemetry collector or Jaeger over OTLP/HTTP.

Each request event that carries a span (`proxy.tracecontext`) becomes one OTLP
span: a CLIENT span at the caller's proxy, a SERVER span at the callee's, with
the request's method, path, status, route and both identities as attributes.
The query goes apart, in `url.query`, with every value redacted (`vm_mesh.redaction`):
a collector is often someone else's, and the proxy cannot tell an `access_token` from
a page number.
Spans wait in a bounded queue and leave in batches (JSON, `POST /v1/traces`)
off the request path: a collector that is slow or down costs dropped spans,
counted and logged once per outage, never a slower request.
"""

import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Any

import httpx

from proxy.events import RequestEvent
from proxy.metrics import error_reason
from proxy.stats import is_success
from vm_mesh.redaction import redacted_query

log = logging.getLogger("vmesh.proxy.tracing")

MAX_QUEUED = 2048  # spans waiting to leave; more are dropped
BATCH = 512  # spans per request to the collector
ENCODE_SLICE = 64  # spans built and encoded between two turns of the event loop
FLUSH_INTERVAL_S = 1.0
POST_TIMEOUT_S = 5.0
CLOSE_WITHIN_S = 5.0  # for the last spans to leave, once the proxy has drained

_CLIENT, _SERVER = 3, 2  # OTLP SpanKind
_STATUS_ERROR = 2  # OTLP StatusCode


def _attribute(key: str, value: str | int | None) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 is a string in JSON
    return {"key": key, "value": {"stringValue": value}}


def span(event: RequestEvent) -> dict[str, Any]:
    """The OTLP/JSON span of a request event that has one (ids hex, times in ns as strings)."""
    start_ns = round(event.ts * 1e6) * 1000  # a float of epoch seconds holds microseconds
    path, has_query, query = (event.path or "").partition("?")
    attributes = [
        _attribute("http.request.method", event.method),
        _attribute("url.path", path),
        _attribute("url.query", redacted_query(query) if has_query else None),
        _attribute("server.address", event.authority),
        _attribute("http.response.status_code", event.status),
        _attribute("error.type", error_reason(event.error)),
        _attribute("vmesh.direction", event.direction),
        _attribute("vmesh.route", event.route),
        _attribute("vmesh.dst_service", event.dst_service),
        _attribute("vmesh.dst_instance", event.dst_instance),
        _attribute("vmesh.client_id", event.src_id),
        _attribute("vmesh.server_id", event.dst_id),
        _attribute("vmesh.retries", event.retries or None),
    ]
    return {
        "traceId": event.trace_id,
        "spanId": event.span_id,
        "parentSpanId": event.parent_span_id,
        "name": f"{event.method} {event.dst_service or '-'}",
        "kind": _CLIENT if event.direction == "outbound" else _SERVER,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + round(event.latency_ms * 1e6)),
        "attributes": [a for a in attributes if a is not None],
        "status": {} if is_success(event) else {"code": _STATUS_ERROR},
    }


class SpanExporter:
    """An EventBus subscriber that sends the spans of its events to `endpoint` in batches.

    Events wait as they are; their spans are built and encoded when a batch
    leaves, `ENCODE_SLICE` at a time between turns of the loop, so that a full
    batch does not stall the requests the loop carries.
    """

    def __init__(self, endpoint: str, resource: dict[str, str]) -> None:
        self.endpoint = endpoint
        self._resource = json.dumps(
            {"attributes": [_attribute(k, v) for k, v in resource.items() if v]})
        self._queue: deque[RequestEvent] = deque()
        self._full = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._failing = False
        self._overflowing = False

    def observe(self, event: RequestEvent) -> None:
        if event.span_id is None:
            return
        if len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            if not self._overflowing:  # once per episode, not once per span
                self._overflowing = True
                log.warning("trace collector slower than the traffic; dropping spans",
                            extra={"event": "tracing_queue_full", "endpoint": self.endpoint,
                                   "queued": MAX_QUEUED})
            return
        self._queue.append(event)
        if len(self._queue) >= BATCH:
            self._full.set()

    def start(self) -> None:
        """Send what is queued every `FLUSH_INTERVAL_S`, or as soon as a batch is full."""
        self._task = asyncio.create_task(self._run())

    async def close(self, within: float = CLOSE_WITHIN_S) -> None:
        """Stop, once the spans still queued (a stopping proxy's last requests) are sent; after
        `within` seconds the ones left are dropped, counted and logged."""
        self._stopping = True
        self._full.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._task, within)  # a batch cut off goes back
        if self._queue:
            lost = len(self._queue)
            self.dropped += lost
            self._queue.clear()
            log.warning("spans not sent before the exporter stopped",
                        extra={"event": "tracing_export_cut", "endpoint": self.endpoint,
                               "dropped": lost})

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=POST_TIMEOUT_S) as client:
            while not (self._stopping and not self._queue):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), FLUSH_INTERVAL_S)
                self._full.clear()
                if not await self._send_all(client) and self._stopping:
                    return  # the collector fails: what is left is counted by `close`

    async def _send_all(self, client: httpx.AsyncClient) -> bool:
        """Send the queue in batches; False when the collector failed (the batch is lost)."""
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            try:
                body = await self._encode(batch)
                answer = await client.post(self.endpoint, content=body,
                                           headers={"content-type": "application/json"})
                answer.raise_for_status()
            except httpx.HTTPError as exc:
                self.dropped += len(batch)
                if not self._failing:  # once per outage, not once per batch
                    log.warning("trace collector refused spans; dropping them until it answers",
                                extra={"event": "tracing_export_failed",
                                       "endpoint": self.endpoint, "detail": str(exc)})
                self._failing = True
                return False
            except asyncio.CancelledError:
                self._queue.extendleft(reversed(batch))  # not sent: `close` counts them
                raise
            if self._failing or self._overflowing:
                log.info("trace collector keeps up again",
                         extra={"event": "tracing_export_resumed", "endpoint": self.endpoint,
                                "dropped": self.dropped})
            self._failing = self._overflowing = False
        return True

    async def _encode(self, batch: list[RequestEvent]) -> bytes:
        """The ExportTraceServiceRequest of `batch` as JSON, encoded a slice at a time."""
        spans: list[str] = []
        for offset in range(0, len(batch), ENCODE_SLICE):
            if offset:
                await asyncio.sleep(0)  # let the requests under way have the loop
            spans += [json.dumps(span(event)) for event in batch[offset:offset + ENCODE_SLICE]]
        return (
            f'{{"resourceSpans":[{{"resource":{self._resource},"scopeSpans":[{{"scope":'
            f'{{"name":"vmesh-proxy"}},"spans":[{",".join(spans)}]}}]}}]}}'
        ).encode()
