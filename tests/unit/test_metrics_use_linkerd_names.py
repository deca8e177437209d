"""The request event becomes Prometheus series with Linkerd's names and labels."""

from prometheus_client.parser import text_string_to_metric_families

from proxy.events import RequestEvent
from proxy.metrics import ProxyMetrics


def _samples(metrics: ProxyMetrics) -> dict[str, list]:
    families = text_string_to_metric_families(metrics.exposition().decode())
    return {f.name: f.samples for f in families}


def test_http_request_counts_and_latency() -> None:
    metrics = ProxyMetrics()
    for status in (200, 200, 503):
        metrics.observe(
            RequestEvent(
                ts=0,
                id="1",
                direction="outbound",
                src_addr="a",
                method="GET",
                authority="store",
                dst_service="store",
                status=status,
                latency_ms=12,
                tls=True,
                dst_id="spiffe://vmesh.local/svc/store",
            )
        )
    samples = _samples(metrics)
    requests = [s for s in samples["request"] if s.name == "request_total"]
    assert requests[0].value == 3
    assert requests[0].labels["dst_service"] == "store" and requests[0].labels["tls"] == "true"
    responses = {
        s.labels["status_code"]: s for s in samples["response"] if s.name == "response_total"
    }
    assert responses["503"].labels["classification"] == "failure"
    assert responses["200"].value == 2
    count = [s for s in samples["response_latency_ms"] if s.name == "response_latency_ms_count"]
    assert sum(s.value for s in count) == 3


def test_a_tcp_connection_is_open_from_the_start_and_counts_bytes_as_they_pass() -> None:
    metrics = ProxyMetrics()
    event = RequestEvent(ts=0, id="1", direction="outbound", src_addr="a", dst_service="db")
    meter = metrics.tcp_meter(event)
    meter.read(100)
    meter.written(40)
    samples = _samples(metrics)
    assert samples["tcp_open"][0].value == 1
    assert samples.get("tcp_close", []) == []  # open until it closes
    assert (samples["tcp_read_bytes"][0].value, samples["tcp_write_bytes"][0].value) == (100, 40)
    meter.close("tcp.reset: Connection reset by peer")
    [closed] = _samples(metrics)["tcp_close"]
    assert (closed.labels["error"], closed.value) == ("tcp.reset", 1)
