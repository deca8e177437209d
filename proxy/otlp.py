"""Spans of sampled traces, exported to an OpenTelemetry collector or Jaeger over OTLP/HTTP.

Each request event that carries a span (`proxy.tracecontext`) becomes one OTLP
span: a CLIENT span at the caller's proxy, a SERVER span at the callee's, with
the request's method, path, status, route and both identities as attributes.
The query goes apart, in `url.query`, with every value redacted (`vm_mesh.redaction`):
a collector is often someone else's, and the proxy cannot tell an `access_token` from
a page number.
Spans wait in a bounded queue and leave in batches (JSON, `POST /v1/traces`)
off the request path. A collector that is down or says to wait (429, 502, 503,
504) gets the batch again after its `Retry-After`, or a backoff doubling from
1 s to 30 s, while newer spans queue behind it; one that finds a batch too
large (413) gets it, and the next ones, in halves; one that rejects a batch
(any other error status) loses that batch alone. Spans that find the queue full, or
are rejected, cost counted drops logged once per episode, never a slower request.
"""

import asyncio
import contextlib
import email.utils
import json
import logging
import time
from collections import deque
from typing import Any

import httpx

from proxy.events import RequestEvent
from proxy.metrics import error_reason
from proxy.span_tally import SpanTally
from vm_mesh.redaction import redacted_query

log = logging.getLogger("vmesh.proxy.tracing")

MAX_QUEUED = 2048  # spans waiting to leave; more are dropped
BATCH = 512  # spans per request to the collector (fewer once it says 413, too large)
ENCODE_SLICE = 64  # spans built and encoded between two turns of the event loop
FLUSH_INTERVAL_S = 1.0
POST_TIMEOUT_S = 5.0
CLOSE_WITHIN_S = 5.0  # for the last spans to leave, once the proxy has drained

# OTLP/HTTP: these answers (and no answer at all) mean "try again later"; others, never
RETRYABLE = frozenset({429, 502, 503, 504})
FIRST_RETRY_S = 1.0  # backoff: doubles at each failed try, up to MAX_RETRY_S
MAX_RETRY_S = 30.0  # also caps a collector's Retry-After

_CLIENT, _SERVER = 3, 2  # OTLP SpanKind
_STATUS_ERROR = 2  # OTLP StatusCode


def retry_delay(retry_after: str | None, previous: float | None) -> float:
    """Seconds to wait before trying the collector again: its `Retry-After` (seconds or an
    HTTP date) when it sent one, else twice the `previous` wait (the first: `FIRST_RETRY_S`);
    never less than `FIRST_RETRY_S` nor more than `MAX_RETRY_S`."""
    if retry_after is not None:
        value = retry_after.strip()
        asked = None
        if value.isdigit():
            asked = float(value)
        else:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                asked = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        if asked is not None:
            return min(max(asked, FIRST_RETRY_S), MAX_RETRY_S)
    return FIRST_RETRY_S if previous is None else min(max(previous, FIRST_RETRY_S) * 2, MAX_RETRY_S)


def partial_success(answer: bytes) -> tuple[int, str]:
    """The spans a collector's success answer says it refused, and why (OTLP's
    `partialSuccess`); (0, "") for a whole success or an answer that says nothing."""
    try:
        partial = json.loads(answer or b"{}").get("partialSuccess") or {}
        return int(partial.get("rejectedSpans") or 0), str(partial.get("errorMessage", ""))[:200]
    except (ValueError, TypeError, AttributeError):
        return 0, ""


async def _until(event: asyncio.Event, within: float) -> None:
    """Wait for `event`, at most `within` seconds."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), within)


def _attribute(key: str, value: str | int | None) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 is a string in JSON
    return {"key": key, "value": {"stringValue": value}}


# the methods the HTTP specifications define; others are `_OTHER` (a label of bounded size)
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})


def host_and_port(authority: str) -> tuple[str, int | None]:
    """`server.address` and `server.port` of a Host value: `api:8080` -> (`api`, 8080),
    `[::1]` -> (`::1`, None)."""
    host, colon, port = authority.rpartition(":")
    if not colon or not port.isdigit() or (host.startswith("[") != host.endswith("]")):
        host, port = authority, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port) if port else None


def span(event: RequestEvent) -> dict[str, Any]:
    """The OTLP/JSON span of a request event that has one (ids hex, times in ns as strings),
    as OpenTelemetry's HTTP semantic conventions name things: a 4xx is an error of the
    CLIENT span (the caller's proxy), not of the SERVER span; `error.type` is the proxy's
    reason, else the status that made it an error."""
    start_ns = round(event.ts * 1e6) * 1000  # a float of epoch seconds holds microseconds
    path, has_query, query = (event.path or "").partition("?")
    client = event.direction == "outbound"
    status = event.status
    failed = event.error is not None or status is None or status >= (400 if client else 500)
    error_type = error_reason(event.error) or (str(status) if failed and status else None)
    method = event.method if event.method in KNOWN_METHODS else "_OTHER"
    host, port = host_and_port(event.authority or "")
    attributes = [
        _attribute("http.request.method", method),
        _attribute("http.request.method_original", event.method if method == "_OTHER" else None),
        _attribute("url.scheme", "http"),
        _attribute("url.path", path),
        _attribute("url.query", redacted_query(query) if has_query else None),
        _attribute("server.address", host),
        _attribute("server.port", port),
        _attribute("network.protocol.version", "1.1"),
        _attribute("http.response.status_code", status),
        _attribute("error.type", error_type),
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
        "traceState": event.trace_state,
        "name": f"{'HTTP' if method == '_OTHER' else method} {event.dst_service or '-'}",
        "kind": _CLIENT if client else _SERVER,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + round(event.latency_ms * 1e6)),
        "attributes": [a for a in attributes if a is not None],
        "status": {"code": _STATUS_ERROR} if failed else {},
    }


class SpanExporter:
    """An EventBus subscriber that sends the spans of its events to `endpoint` in batches.

    Events wait as they are; their spans are built and encoded when a batch
    leaves, `ENCODE_SLICE` at a time between turns of the loop, so that a full
    batch does not stall the requests the loop carries.
    """

    def __init__(self, endpoint: str, resource: dict[str, str],
                 tally: SpanTally | None = None) -> None:
        self.endpoint = endpoint
        self._tally = tally or SpanTally()
        self._resource = json.dumps(
            {"attributes": [_attribute(k, v) for k, v in resource.items() if v]})
        self._queue: deque[RequestEvent] = deque()
        self.batch = BATCH  # spans per request: what the collector takes in one
        self._full = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._failing = False  # the collector is unavailable (its batch waits)
        self._overflowing = False
        self._rejecting = False  # the collector rejects batches (they are dropped)
        self._stopped = asyncio.Event()  # ends a wait between two tries

    def observe(self, event: RequestEvent) -> None:
        if event.span_id is None:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._drop("queue_full", 1)
            if not self._overflowing:  # once per episode, not once per span
                self._overflowing = True
                log.warning("trace collector slower than the traffic; dropping spans",
                            extra={"event": "tracing_queue_full", "endpoint": self.endpoint,
                                   "queued": MAX_QUEUED})
            return
        self._queue.append(event)
        if len(self._queue) >= self.batch:
            self._full.set()

    def start(self) -> None:
        """Send what is queued every `FLUSH_INTERVAL_S`, or as soon as a batch is full."""
        self._task = asyncio.create_task(self._run())

    async def close(self, within: float = CLOSE_WITHIN_S) -> None:
        """Stop, once the spans still queued (a stopping proxy's last requests) are sent; after
        `within` seconds the ones left are dropped, counted and logged."""
        self._stopping = True
        self._full.set()
        self._stopped.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._task, within)  # a batch cut off goes back
        if self._queue:
            lost = len(self._queue)
            self._drop("cut", lost)
            self._queue.clear()
            log.warning("spans not sent before the exporter stopped",
                        extra={"event": "tracing_export_cut", "endpoint": self.endpoint,
                               "dropped": lost})

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=POST_TIMEOUT_S) as client:
            retry_in: float | None = None  # the collector is unavailable: wait, then again
            while not (self._stopping and not self._queue):
                if retry_in is None:
                    await _until(self._full, FLUSH_INTERVAL_S)
                else:
                    await _until(self._stopped, retry_in)
                self._full.clear()
                retry_in = await self._send_all(client, retry_in)
                if retry_in is not None and self._stopping:
                    return  # the collector fails: what is left is counted by `close`

    async def _send_all(self, client: httpx.AsyncClient, retried: float | None) -> float | None:
        """Send the queue in batches. None once it is empty; while the collector is
        unavailable, the seconds to wait before trying again (`retried`: the last wait),
        with the batch back at the head of the queue."""
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            try:
                body = await self._encode(batch)
                answer = await client.post(self.endpoint, content=body,
                                           headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:
                return self._unavailable(batch, str(exc) or type(exc).__name__, None, retried)
            except asyncio.CancelledError:
                self._queue.extendleft(reversed(batch))  # not sent: `close` counts them
                raise
            if answer.status_code in RETRYABLE:
                return self._unavailable(batch, f"HTTP {answer.status_code}",
                                         answer.headers.get("retry-after"), retried)
            if answer.is_success:
                refused, detail = partial_success(answer.content)
                self._tally.sent += len(batch) - refused
                if refused:
                    self._rejected(refused, answer.status_code, detail)
                else:
                    self._resumed()
            elif answer.status_code == 413 and len(batch) > 1:
                self._halve(batch)
            else:
                self._rejected(len(batch), answer.status_code, answer.text[:200])
        return None

    def _unavailable(self, batch: list[RequestEvent], detail: str, retry_after: str | None,
                     retried: float | None) -> float:
        """Put `batch` back to be sent again, and say once per outage that the collector is
        unavailable; the seconds to wait: its `Retry-After`, else the backoff's next step."""
        self._queue.extendleft(reversed(batch))
        if not self._failing:  # once per outage, not once per batch
            log.warning("trace collector unavailable; spans wait and are sent again",
                        extra={"event": "tracing_export_failed",
                               "endpoint": self.endpoint, "detail": detail})
        self._failing = True
        return retry_delay(retry_after, retried)

    def _halve(self, batch: list[RequestEvent]) -> None:
        """The collector found `batch` too large (413): send it, and every batch after it,
        in halves (the collector's limit holds as long as the exporter)."""
        self._queue.extendleft(reversed(batch))
        self.batch = len(batch) // 2
        log.info("trace collector takes smaller batches",
                 extra={"event": "tracing_batch_smaller", "endpoint": self.endpoint,
                        "spans": self.batch})

    def _rejected(self, count: int, status: int, detail: str) -> None:
        """The collector will never take `count` spans (a 4xx, a 500, a partial success):
        drop them, counted, and say so once until a batch is taken whole again."""
        self._drop("rejected", count)
        if not self._rejecting:
            log.warning("trace collector rejected spans; dropping them",
                        extra={"event": "tracing_export_rejected", "endpoint": self.endpoint,
                               "status": status, "detail": detail})
        self._rejecting = True

    def _drop(self, reason: str, count: int) -> None:
        self.dropped += count
        self._tally.dropped[reason] += count

    def _resumed(self) -> None:
        """A batch was taken whole: say so once, after spans were lost or held."""
        if self._failing or self._overflowing or self._rejecting:
            log.info("trace collector keeps up again",
                     extra={"event": "tracing_export_resumed", "endpoint": self.endpoint,
                            "dropped": self.dropped})
        self._failing = self._overflowing = self._rejecting = False

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
