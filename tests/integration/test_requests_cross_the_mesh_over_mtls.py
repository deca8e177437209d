"""A real client's request goes app -> outbound proxy -> mTLS -> inbound proxy -> app."""

import json
import re
import socket
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


def test_the_outbound_proxy_serves_as_http_proxy_and_takes_mesh_names(mesh) -> None:
    mesh, backends = mesh
    backends.append(web := start_backend("web"))
    mesh.start_proxy("web", web.port)
    front = mesh.start_proxy("front", 1)
    as_proxy = _curl("--proxy", f"http://{front.outbound}", "http://web/via-proxy?q=1")
    assert as_proxy.returncode == 0, as_proxy.stderr
    assert json.loads(as_proxy.stdout)["path"] == "/via-proxy?q=1"  # origin-form, query kept
    # the target's authority is the Host the app sees, whatever Host the client sent, if any
    other_host = _curl("--proxy", f"http://{front.outbound}", "-H", "Host: elsewhere",
                       "http://web/other-host")
    assert json.loads(other_host.stdout)["host"] == "web", other_host.stdout
    host, port = front.outbound.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as http10:
        http10.sendall(b"GET http://web/no-host HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := http10.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert json.loads(body)["host"] == "web"
    dotted = _curl("-H", "Host: web.mesh", f"http://{front.outbound}/dotted")
    assert dotted.returncode == 0, dotted.stderr
    assert json.loads(dotted.stdout)["path"] == "/dotted"


def test_pipelined_requests_are_answered_in_order(mesh) -> None:
    mesh, backends = mesh
    backends.append(web := start_backend("web"))
    mesh.start_proxy("web", web.port)
    front = mesh.start_proxy("front", 1)
    host, port = front.outbound.rsplit(":", 1)
    paths = [f"/p{n}" for n in range(5)]
    burst = b"".join(f"GET {p} HTTP/1.1\r\nHost: web\r\n\r\n".encode() for p in paths)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(burst + b"GET /last HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    seen = re.findall(rb'"path": ?"(/[a-z0-9]+)"', data)
    assert [p.decode() for p in seen] == [*paths, "/last"]
