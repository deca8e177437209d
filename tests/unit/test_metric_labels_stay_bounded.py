"""Label values a client or upstream chooses cannot grow the number of series without bound."""

from prometheus_client.parser import text_string_to_metric_families

from proxy.events import RequestEvent
from proxy.metrics import MAX_LABEL_VALUES, ProxyMetrics


def _series(metrics: ProxyMetrics, name: str) -> list:
    families = text_string_to_metric_families(metrics.exposition().decode())
    return [s for f in families for s in f.samples if s.name == name]


def _http(authority: str, error: str | None = None, status: int = 200) -> RequestEvent:
    return RequestEvent(ts=0, id="1", direction="outbound", src_addr="a", method="GET",
                        authority=authority, dst_service="store", status=status, error=error)


def test_error_detail_is_cut_to_its_stable_reason() -> None:
    metrics = ProxyMetrics()
    for port in range(50):
        metrics.observe(_http("store", f"upstream.connect_failed: [Errno 111] 127.0.0.1:{port}",
                              status=502))
    (response,) = _series(metrics, "response_total")
    assert response.labels["error"] == "upstream.connect_failed"
    assert response.value == 50


def test_new_authorities_beyond_the_cap_are_counted_as_other() -> None:
    metrics = ProxyMetrics()
    for i in range(MAX_LABEL_VALUES + 100):
        metrics.observe(_http(f"host-{i}.example"))
    requests = _series(metrics, "request_total")
    assert len(requests) == MAX_LABEL_VALUES + 1
    other = next(s for s in requests if s.labels["authority"] == "other")
    assert other.value == 100
    assert sum(s.value for s in requests) == MAX_LABEL_VALUES + 100


def test_refused_handshakes_are_tls_failures_not_tcp_connections() -> None:
    metrics = ProxyMetrics()
    for detail in ("certificate required", "unknown ca", "handshake timed out"):
        metrics.observe(RequestEvent(ts=0, id="1", direction="inbound", src_addr="a",
                                     dst_service="api", error=f"tls.handshake_failed: {detail}"))
    metrics.observe(RequestEvent(ts=0, id="2", direction="inbound", src_addr="a",
                                 dst_service="api", error="tls.no_identity: two URI SANs"))
    failures = {s.labels["error"]: s.value
                for s in _series(metrics, "tls_handshake_failure_total")}
    assert failures == {"tls.handshake_failed": 3.0, "tls.no_identity": 1.0}
    assert _series(metrics, "tcp_open_total") == []


def test_new_destination_services_beyond_the_cap_are_counted_as_other() -> None:
    metrics = ProxyMetrics()
    for i in range(MAX_LABEL_VALUES + 100):  # Host headers naming services that do not exist
        metrics.observe(RequestEvent(ts=0, id="1", direction="outbound", src_addr="a",
                                     method="GET", authority="x", dst_service=f"svc-{i}",
                                     status=503, error="too_many_destinations"))
    services = {s.labels["dst_service"] for s in _series(metrics, "request_total")}
    assert len(services) == MAX_LABEL_VALUES + 1 and "other" in services
