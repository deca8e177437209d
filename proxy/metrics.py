"""Prometheus metrics of one proxy, named after Linkerd's so dashboards carry over.

A subscriber of the request event: `request_total`, `response_total`,
`response_latency_ms`, and for opaque TCP `tcp_open_total`, `tcp_close_total`,
`tcp_read_bytes_total`, `tcp_write_bytes_total`. Labels are the destination
service, route and identities, never paths or addresses, so cardinality stays
bounded by the mesh's size.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.events import RequestEvent

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


class ProxyMetrics:
    """The proxy's metric families in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("request", "Requests received.", REQUEST_LABELS, registry=r)
        self.responses = Counter(
            "response",
            "Responses sent, by status and classification.",
            [*REQUEST_LABELS, "status_code", "classification", "error"],
            registry=r,
        )
        self.latency = Histogram(
            "response_latency_ms",
            "Time from request to response headers, in milliseconds.",
            ["direction", "dst_service", "route", "status_code"],
            buckets=LATENCY_BUCKETS_MS,
            registry=r,
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

    def observe(self, event: RequestEvent) -> None:
        """EventBus subscriber."""
        tls = "true" if event.tls else "false"
        client_id, server_id = event.src_id or "", event.dst_id or ""
        service = event.dst_service or ""
        if event.method is None:  # an opaque TCP connection, reported when it closed
            labels = (event.direction, service, tls, client_id, server_id)
            self.tcp_open.labels(*labels).inc()
            self.tcp_close.labels(*labels, event.error or "").inc()
            self.tcp_read.labels(*labels).inc(event.bytes_in)
            self.tcp_write.labels(*labels).inc(event.bytes_out)
            return
        labels = (
            event.direction,
            event.authority or "",
            service,
            event.route,
            tls,
            client_id,
            server_id,
        )
        self.requests.labels(*labels).inc()
        status = str(event.status) if event.status is not None else ""
        failed = event.error is not None or event.status is None or event.status >= 500
        self.responses.labels(
            *labels, status, "failure" if failed else "success", event.error or ""
        ).inc()
        self.latency.labels(event.direction, service, event.route, status).observe(event.latency_ms)

    def exposition(self) -> bytes:
        """The Prometheus text format of every family in the registry."""
        return generate_latest(self.registry)
