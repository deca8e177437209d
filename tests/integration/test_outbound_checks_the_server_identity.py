"""The outbound proxy only talks to a server proving the identity of the service it asked for."""

import subprocess
from pathlib import Path

import httpx

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.support import require_tool


def test_an_instance_with_another_services_identity_gets_no_request(tmp_path: Path) -> None:
    curl = require_tool("curl")
    mesh = Mesh(tmp_path)
    backend = start_backend("db")
    try:
        db = mesh.start_proxy("db", backend.port)
        # Discovery (wrongly, or maliciously) lists db's proxy as an instance of web.
        mesh.add_instance("web", db.ports["inbound"], "web-impostor")
        front = mesh.start_proxy("front", 1)
        result = subprocess.run(
            [curl, "-sS", "-i", "-H", "Host: web", f"http://{front.outbound}/secret"],
            capture_output=True, text=True, timeout=30,
        )
        head = result.stdout.partition("\n\n")[0].lower()
        assert head.startswith("http/1.1 502 "), result.stdout
        assert "vmesh-error: upstream.wrong_identity" in head
        assert httpx.get(f"http://127.0.0.1:{backend.port}/_stats").json()["requests"] == 0
    finally:
        mesh.stop()
        backend.stop()
