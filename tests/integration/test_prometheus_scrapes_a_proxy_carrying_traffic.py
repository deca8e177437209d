"""A real Prometheus scrapes a real proxy's /metrics over mTLS while requests cross the mesh,
and a PromQL query returns the requests the test sent, by route, status and identity."""

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.support import free_port, require_tool

REQUESTS = 25


@pytest.fixture
def mesh(tmp_path: Path):
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    yield mesh, backend
    mesh.stop()
    backend.stop()


def _scrape_config(path: Path, target: str, certificates: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "vmesh",
                        "scheme": "https",
                        # proxy leaves carry a SPIFFE ID and no host name, so Prometheus cannot
                        # check a name; the proxy still verifies Prometheus' mesh certificate
                        "tls_config": {
                            "ca_file": str(certificates / "bundle.pem"),
                            "cert_file": str(certificates / "cert.pem"),
                            "key_file": str(certificates / "key.pem"),
                            "insecure_skip_verify": True,
                        },
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )


def _query_until(url: str, promql: str, predicate, within: float = 60.0) -> list:
    """Ask Prometheus until the answer satisfies `predicate` (scrapes come every second)."""
    deadline = time.monotonic() + within
    result: list = []
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                answer = client.get(url, params={"query": promql})
                if answer.status_code == 200:
                    result = answer.json()["data"]["result"]
                    if predicate(result):
                        return result
            except httpx.TransportError:
                pass  # Prometheus is still starting
            time.sleep(0.5)
    raise AssertionError(f"Prometheus never answered {promql!r} as expected; last: {result}")


def test_prometheus_counts_the_requests_that_crossed_the_proxy(mesh, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    mesh, backend = mesh
    mesh.start_proxy("web", backend.port)
    front = mesh.start_proxy("front", 1)
    with httpx.Client(base_url=f"http://{front.outbound}", headers={"host": "web"}) as client:
        statuses = [client.get(f"/items/{i}").status_code for i in range(REQUESTS)]
    assert statuses == [200] * REQUESTS

    scraper = mesh.issue("prometheus", directory=tmp_path / "scraper", kind="operator")
    config = tmp_path / "prometheus.yml"
    _scrape_config(config, f"127.0.0.1:{front.ports['admin']}", scraper)
    web_port = free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        query = f"http://127.0.0.1:{web_port}/api/v1/query"
        requests = _query_until(
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
        successes = _query_until(
            query,
            'sum(response_total{direction="outbound",classification="success",status_code="200"})',
            lambda result: bool(result),
        )
        assert float(successes[0]["value"][1]) == REQUESTS
        latency = _query_until(
            query,
            'response_latency_ms_count{direction="outbound",dst_service="web"}',
            lambda result: bool(result),
        )
        assert float(latency[0]["value"][1]) == REQUESTS
    finally:
        process.terminate()
        process.wait(timeout=20)
