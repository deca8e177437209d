"""Upstream refused -> 502, no instance -> 503, too slow -> 504: each says which proxy and why."""

import subprocess

import pytest

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.support import free_port, require_tool


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mesh")
    mesh = Mesh(root)
    slow = start_backend("slow", delay=3)
    policy = root / "etc/vmesh/policy.d/slow.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(
        "kind: HTTPRoute\nname: slow-timeout\nservice: slow\nrules:\n"
        "  - matches: [{path: {prefix: /}}]\n    timeout: {request: 500ms}\n"
    )
    mesh.start_proxy("slow", slow.port)
    mesh.start_proxy("gone", 1)  # its app port 1 refuses every connection
    mesh.add_instance("closed", free_port(), "closed-1")
    front = mesh.start_proxy("front", 1)
    yield front
    mesh.stop()
    slow.stop()


def _get(front, host: str) -> tuple[str, dict[str, str], str]:
    curl = require_tool("curl")
    result = subprocess.run(
        [curl, "-sS", "-i", "-H", f"Host: {host}", f"http://{front.outbound}/x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    head, _, body = result.stdout.partition("\n\n")  # text mode folds CRLF to LF
    lines = head.split("\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


def test_service_without_instances_gets_503(mesh) -> None:
    status, headers, body = _get(mesh, "nowhere")
    assert status.startswith("HTTP/1.1 503")
    assert headers["vmesh-error"] == "no_endpoints"
    assert "front-" in body and "nowhere" in body


def test_refused_upstream_gets_502(mesh) -> None:
    status, headers, body = _get(mesh, "closed")
    assert status.startswith("HTTP/1.1 502")
    assert headers["vmesh-error"] == "upstream.connect_failed"
    assert "front-" in body


def test_app_that_refuses_connections_gets_502_from_its_inbound_proxy(mesh) -> None:
    status, headers, body = _get(mesh, "gone")
    assert status.startswith("HTTP/1.1 502")
    assert headers["vmesh-error"] == "app.connect_failed"
    assert "gone-" in body and "inbound" in body


def test_slow_upstream_gets_504_after_the_route_timeout(mesh) -> None:
    status, headers, body = _get(mesh, "slow.mesh")
    assert status.startswith("HTTP/1.1 504")
    assert headers["vmesh-error"] == "timeout.request"
    assert "front-" in body
