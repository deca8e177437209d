"""Prometheus metrics of one proxy, named after Linkerd's so dashboards carry over.

A subscriber of the request event: `request_total`, `response_total`,
`response_latency_ms`, and for opaque TCP `tcp_open_total`, `tcp_close_total`,
`tcp_read_bytes_total`, `tcp_write_bytes_total`. Labels are the destination
service, route and identities, never paths or addresses, so cardinality stays
bounded by the mesh's size. Values a client or an upstream can choose are
bounded too: errors keep only their stable reason (`upstream.connect_failed`,
not the text after it), and each of `authority`, `client_id` and `server_id`
takes at most `MAX_LABEL_VALUES` distinct values, after which new ones are
counted as `other`. Refused TLS handshakes are counted in
`tls_handshake_failure_total`, not as TCP connections. The per-request families
are `proxy.series` tables (one dict update per request); the rest, touched once
per connection, are prometheus_client's own counters.
"""

from prometheus_client import CollectorRegistry, Counter, generate_latest

from proxy.events import RequestEvent
from proxy.series import Tables

# Linkerd's response_latency_ms buckets.
LATENCY_BUCKETS_MS = (
    1,
    2,
    3,
    4,
    5,
    10,
    20,
    30,
    40,
    50,
    100,
    200,
    300,
    400,
    500,
    1000,
    2000,
    3000,
    4000,
    5000,
    10000,
    20000,
    30000,
    40000,
    50000,
)
REQUEST_LABELS = ["direction", "authority", "dst_service", "route", "tls", "client_id", "server_id"]
TCP_LABELS = ["direction", "dst_service", "tls", "client_id", "server_id"]
MAX_LABEL_VALUES = 256
MAX_LABEL_LENGTH = 128
OVERFLOW = "other"


def error_reason(error: str | None) -> str:
    """The stable reason of an event's error: `app.connect_failed: [Errno 111] ...` ->
    `app.connect_failed`."""
    if not error:
        return ""
    return error.split(":", 1)[0].strip()[:64]


class BoundedValues:
    """Admits the first `limit` distinct label values; later new ones become `other`."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str | None) -> str:
        if value in self._seen:  # the common case: a value already admitted, as it is
            return value  # type: ignore[return-value]
        value = (value or "")[:MAX_LABEL_LENGTH]
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OVERFLOW
        self._seen.add(value)
        return value


class ProxyMetrics:
    """The proxy's metric families in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        tables = Tables(r)  # per-request families: one dict update each
        self.requests = tables.counter("request", "Requests received.", REQUEST_LABELS)
        self.responses = tables.counter(
            "response",
            "Responses sent, by status and classification.",
            [*REQUEST_LABELS, "status_code", "classification", "error"],
        )
        self.latency = tables.histogram(
            "response_latency_ms",
            "Time from request to response headers, in milliseconds.",
            ["direction", "dst_service", "route", "status_code"],
            LATENCY_BUCKETS_MS,
        )
        self.connections = Counter(
            "connection_open",
            "Connections opened between proxies (inbound: accepted, "
            "outbound: dialled), so keep-alive reuse shows as requests per connection.",
            ["direction", "tls"],
            registry=r,
        )
        self.tcp_open = Counter("tcp_open", "TCP connections opened.", TCP_LABELS, registry=r)
        self.tcp_close = Counter(
            "tcp_close", "TCP connections closed.", [*TCP_LABELS, "error"], registry=r
        )
        self.tcp_read = Counter(
            "tcp_read_bytes", "Bytes read from the client side.", TCP_LABELS, registry=r
        )
        self.tcp_write = Counter(
            "tcp_write_bytes", "Bytes written to the client side.", TCP_LABELS, registry=r
        )
        self.tls_failures = Counter(
            "tls_handshake_failure",
            "TLS handshakes refused (no valid mesh identity, bad chain, timeout), by reason.",
            ["direction", "error"],
            registry=r,
        )
        self._authority = BoundedValues()
        self._client_id = BoundedValues()
        self._server_id = BoundedValues()

    def observe(self, event: RequestEvent) -> None:
        """EventBus subscriber."""
        error = error_reason(event.error) if event.error else ""
        if error.startswith("tls."):
            self.tls_failures.labels(event.direction, error).inc()
            return
        tls = "true" if event.tls else "false"
        client_id, server_id = self._client_id(event.src_id), self._server_id(event.dst_id)
        service = event.dst_service or ""
        if event.method is None:  # an opaque TCP connection, reported when it closed
            tcp_labels = (event.direction, service, tls, client_id, server_id)
            self.tcp_open.labels(*tcp_labels).inc()
            self.tcp_close.labels(*tcp_labels, error).inc()
            self.tcp_read.labels(*tcp_labels).inc(event.bytes_in)
            self.tcp_write.labels(*tcp_labels).inc(event.bytes_out)
            return
        labels = (
            event.direction,
            self._authority(event.authority),
            service,
            event.route,
            tls,
            client_id,
            server_id,
        )
        self.requests.inc(labels)
        status = str(event.status) if event.status is not None else ""
        failed = event.error is not None or event.status is None or event.status >= 500
        self.responses.inc((*labels, status, "failure" if failed else "success", error))
        self.latency.observe((event.direction, service, event.route, status), event.latency_ms)

    def exposition(self) -> bytes:
        """The Prometheus text format of every family in the registry."""
        return generate_latest(self.registry)
