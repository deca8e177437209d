"""A real client's request goes app -> outbound proxy -> mTLS -> inbound proxy -> app."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.support import require_tool


@pytest.fixture
def mesh(tmp_path: Path):
    mesh = Mesh(tmp_path)
    backends = []
    yield mesh, backends
    mesh.stop()
    for backend in backends:
        backend.stop()


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    curl = require_tool("curl")
    return subprocess.run([curl, "-sS", *args], capture_output=True, text=True, timeout=30)


def test_curl_through_two_proxies_reaches_the_app_with_the_caller_identity(mesh) -> None:
    mesh, backends = mesh
    backends.append(web := start_backend("web"))
    mesh.start_proxy("web", web.port)
    front = mesh.start_proxy("front", 1)
    result = _curl(
        "-H",
        "Host: web",
        f"http://{front.outbound}/items/1",
        "-H",
        "vmesh-client-id: spiffe://vmesh.local/svc/forged",
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["name"] == "web" and answer["path"] == "/items/1"
    assert answer["client_id"] == "spiffe://vmesh.local/svc/front"
