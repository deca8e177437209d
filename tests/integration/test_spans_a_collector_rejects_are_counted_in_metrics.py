"""What becomes of a proxy's spans shows on its /metrics: `tracing_span_sent_total` counts
those a collector took, `tracing_span_dropped_total{reason}` those lost (here a batch the
collector rejected), so an operator sees a tracing gap without reading logs."""

from pathlib import Path

from tests.integration.mesh import wait_until
from tests.integration.processes import start_backend
from tests.integration.test_sampled_traces_get_a_span_at_each_proxy import (
    PARENT,
    _get,
    exporting_mesh,
)
from tests.otlp_receiver import OtlpReceiver
from tests.support import require_tool


def test_a_rejected_span_and_a_sent_one_are_counted(tmp_path: Path) -> None:
    curl = require_tool("curl")
    receiver = OtlpReceiver().start()
    receiver.refuse_next(400)  # the first batch: a collector that will never take it
    mesh = exporting_mesh(tmp_path, receiver.endpoint)
    backend = start_backend("web")
    try:
        front = mesh.start_proxy("front", 1)
        proxies = (front, mesh.start_proxy("web", backend.port))

        def total(name: str, **labels: str) -> float:
            return sum(proxy.metric(name, **labels) for proxy in proxies)

        url = f"http://{front.outbound}/items/7"
        # a span at each proxy, each sent on its own: the first to reach the collector is
        # rejected, the other taken
        assert _get(curl, url, f"00-{'1' * 32}-{PARENT}-01")["name"] == "web"
        wait_until(lambda: total("tracing_span_sent_total") == 1, within=20,
                   what="one span sent")
        assert total("tracing_span_dropped_total", reason="rejected") == 1
        assert total("tracing_span_dropped_total") == 1
        assert len(receiver.spans) == 1
    finally:
        mesh.stop()
        backend.stop()
        receiver.stop()
