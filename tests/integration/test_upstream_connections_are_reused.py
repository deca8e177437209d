"""Keep-alive between proxies: many requests, one TLS connection (visible in metrics)."""

import subprocess
from pathlib import Path

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.support import require_tool


def test_twenty_requests_use_one_mtls_connection(tmp_path: Path) -> None:
    curl = require_tool("curl")
    mesh = Mesh(tmp_path)
    web = start_backend("web")
    try:
        web_proxy = mesh.start_proxy("web", web.port)
        front = mesh.start_proxy("front", 1)
        urls = [f"http://{front.outbound}/items/{i}" for i in range(20)]
        for url in urls:  # separate client connections: the reuse is the proxy's doing
            result = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                     "-H", "Host: web", url], capture_output=True, text=True,
                                    timeout=30)
            assert result.stdout == "200", result.stderr
        assert front.metric("request_total", direction="outbound", dst_service="web") == 20
        assert front.metric("connection_open_total", direction="outbound") == 1
        assert web_proxy.metric("connection_open_total", direction="inbound") == 1
        assert web_proxy.metric("request_total", direction="inbound") == 20
    finally:
        mesh.stop()
        web.stop()
