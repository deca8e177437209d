"""A real Prometheus scrapes a real proxy's /metrics over mTLS while requests cross the mesh,
and a PromQL query returns the requests the test sent, by route, status and identity."""

from pathlib import Path

import httpx
import pytest

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.integration.prometheus import query_until, running_prometheus, scrape_config

REQUESTS = 25


@pytest.fixture
def mesh(tmp_path: Path):
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    yield mesh, backend
    mesh.stop()
    backend.stop()


def test_prometheus_counts_the_requests_that_crossed_the_proxy(mesh, tmp_path: Path) -> None:
    mesh, backend = mesh
    mesh.start_proxy("web", backend.port)
    front = mesh.start_proxy("front", 1)
    with httpx.Client(base_url=f"http://{front.outbound}", headers={"host": "web"}) as client:
        statuses = [client.get(f"/items/{i}").status_code for i in range(REQUESTS)]
    assert statuses == [200] * REQUESTS

    scraper = mesh.issue("prometheus", directory=tmp_path / "scraper", kind="operator")
    config = tmp_path / "prometheus.yml"
    scrape_config(config, scraper, targets=(f"127.0.0.1:{front.ports['admin']}",))
    with running_prometheus(config, tmp_path / "tsdb") as query:
        requests = query_until(
            query,
            'sum by (dst_service, route, server_id) (request_total{direction="outbound"})',
            lambda result: bool(result),
        )
        assert len(requests) == 1
        assert requests[0]["metric"] == {
            "dst_service": "web",
            "route": "default",
            "server_id": "spiffe://vmesh.local/svc/web",
        }
        assert float(requests[0]["value"][1]) == REQUESTS
        successes = query_until(
            query,
            'sum(response_total{direction="outbound",classification="success",status_code="200"})',
            lambda result: bool(result),
        )
        assert float(successes[0]["value"][1]) == REQUESTS
        latency = query_until(
            query,
            'response_latency_ms_count{direction="outbound",dst_service="web"}',
            lambda result: bool(result),
        )
        assert float(latency[0]["value"][1]) == REQUESTS
