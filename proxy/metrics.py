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
`tls_handshake_failure_total`, not as TCP connections. The per-request families,
and the per-backend ones of a traffic split (`route_backend_request_total`,
`route_backend_response_latency_ms`), are summed out of one `proxy.series.Rollup`
(one dict update per request); the rest, touched once per connection, are
prometheus_client's own counters.
"""

from prometheus_client import CollectorRegistry, Counter, generate_latest

from proxy.events import RequestEvent
from proxy.series import LabelValues, Rollup

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
BACKEND_LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
REQUEST_LABELS = ["direction", "authority", "dst_service", "route", "tls", "client_id", "server_id"]
# the labels of a request's rollup row: each per-request family takes some of them
ROLLUP_LABELS = [*REQUEST_LABELS, "status_code", "classification", "error", "service"]
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
        # every per-request family from one row per request (`proxy.series.Rollup`)
        self.rollup = rollup = Rollup(r, ROLLUP_LABELS, LATENCY_BUCKETS_MS)
        same = {name: name for name in ROLLUP_LABELS}
        rollup.counter("request", "Requests received.", {n: same[n] for n in REQUEST_LABELS})
        rollup.counter(
            "response",
            "Responses sent, by status and classification.",
            {n: same[n] for n in (*REQUEST_LABELS, "status_code", "classification", "error")},
        )
        rollup.histogram(
            "response_latency_ms",
            "Time from the request to its response's head, in milliseconds (a slow body "
            "does not count, as in Linkerd's time to first byte).",
            {n: same[n] for n in ("direction", "dst_service", "route", "status_code")},
        )
        # per backend of a route (the policy metrics of a traffic split): outbound requests
        # name the logical service in `service` and the backend chosen in `dst_service`
        backend = {"dst_service": "service", "route": "route", "backend": "dst_service"}
        rollup.counter(
            "route_backend_request_total",
            "Requests per backend of a route (traffic split), by response status.",
            {**backend, "status_code": "status_code"},
            when=_routed,
        )
        rollup.histogram(
            "route_backend_response_latency_ms",
            "Time to the response's head per backend of a route, in milliseconds.",
            backend,
            BACKEND_LATENCY_BUCKETS_MS,
            when=_routed,
        )
        self.connections = Counter(
            "connection_open",
            "Connections opened between proxies (inbound: accepted, "
            "outbound: dialled), so keep-alive reuse shows as requests per connection.",
            ["direction", "tls"],
            registry=r,
        )
        for direction in ("inbound", "outbound"):  # served from 0, so the first one is a rate
            self.connections.labels(direction, "true")
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
        self.resends = Counter(
            "request_resend",
            "Requests sent again on a new connection because the pooled one they went out on "
            "was lost before any answer (closed idle as they crossed, or reset), by reason: "
            "only requests safe to repeat, or that the peer proxy says it never read.",
            ["direction", "reason"],
            registry=r,
        )
        self.tls_failures = Counter(
            "tls_handshake_failure",
            "TLS handshakes refused (no valid mesh identity, bad chain, timeout), by reason.",
            ["direction", "error"],
            registry=r,
        )
        self._authority = BoundedValues()
        self._dst_service = BoundedValues()  # named by Host headers too
        self._service = BoundedValues()
        self._client_id = BoundedValues()
        self._server_id = BoundedValues()

    def observe(self, event: RequestEvent) -> None:
        """EventBus subscriber."""
        error = error_reason(event.error) if event.error else ""
        if error.startswith("tls."):
            self.tls_failures.labels(event.direction, error).inc()
            return
        tls = "true" if event.tls else "false"
        service = event.dst_service or ""
        if event.method is None:  # an opaque TCP connection: its TcpMeter counted it
            return
        status = event.status
        failed = event.error is not None or status is None or status >= 500
        values = (
            event.direction,
            event.authority or "",
            service,
            event.route,
            tls,
            event.src_id or "",
            event.dst_id or "",
            "" if status is None else str(status),
            "failure" if failed else "success",
            error,
            event.service or "",
        )
        self.rollup.observe(values, event.response_ms, self._admit)

    def tcp_meter(self, event: RequestEvent) -> "TcpMeter":
        """Count an opaque TCP connection as open, under the labels of `event` (its peer's
        identity known): its bytes are counted as they pass, its close by `TcpMeter.close`."""
        labels = (event.direction, self._dst_service(event.dst_service or ""),
                  "true" if event.tls else "false", self._client_id(event.src_id),
                  self._server_id(event.dst_id))
        self.tcp_open.labels(*labels).inc()
        return TcpMeter(self, labels)

    def _admit(self, values: LabelValues) -> LabelValues:
        """Rollup values with authority, services (a Host header names them) and identities
        bounded (`BoundedValues`)."""
        (direction, authority, service, route, tls, client_id, server_id, status, outcome,
         error, logical_service) = values
        return (
            direction,
            self._authority(authority),
            self._dst_service(service),
            route,
            tls,
            self._client_id(client_id),
            self._server_id(server_id),
            status,
            outcome,
            error,
            self._service(logical_service),
        )

    def exposition(self) -> bytes:
        """The Prometheus text format of every family in the registry."""
        return generate_latest(self.registry)


def _routed(values: LabelValues) -> bool:
    """The row is of outbound requests routed to a logical service (`service` is set)."""
    return values[-1] != ""


class TcpMeter:
    """The counters of one opaque TCP connection: open since it was made, bytes as they pass
    (so a connection open for hours shows its traffic all along), closed with its error."""

    __slots__ = ("_labels", "_metrics", "read", "written")

    def __init__(self, metrics: ProxyMetrics, labels: tuple[str, ...]) -> None:
        self._metrics = metrics
        self._labels = labels
        self.read = metrics.tcp_read.labels(*labels).inc  # bytes from the client side
        self.written = metrics.tcp_write.labels(*labels).inc  # bytes to the client side

    def close(self, error: str | None) -> None:
        """The connection ended; `error` is its reason (`tcp.reset: ...`), if it failed."""
        self._metrics.tcp_close.labels(*self._labels, error_reason(error) if error else "").inc()
