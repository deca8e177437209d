"""Stalled peers through real proxies: an app that stalls in the middle of a response body, a
client that stops reading one, and an admin API client that stops sending are cut off after
the idle timeout instead of holding connections for ever; tap and the log say why."""

import socket
import time

import httpx
import pytest

from tests.integration.mesh import ProxyProcess
from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture  # noqa: F401
from tests.integration.processes import start_backend


def web_behind_front(policy_mesh: PolicyMesh, web_idle: str = "10s",
                     front_idle: str = "10s") -> tuple[ProxyProcess, ProxyProcess]:
    """The test backend as `web` and a `front` proxy that calls it, with these idle timeouts."""
    app = start_backend("web")
    policy_mesh.backends.append(app)
    web = policy_mesh.mesh.start_proxy("web", app.port, idle=web_idle)
    return web, policy_mesh.mesh.start_proxy("front", 1, idle=front_idle)


def test_a_response_body_that_stalls_is_cut_off_after_the_idle_timeout(
    policy_mesh: PolicyMesh,
) -> None:
    web, front = web_behind_front(policy_mesh, web_idle="1s")
    tap = policy_mesh.tap("web")
    web.wait_for_log(lambda line: line.get("msg") == "tap started")

    received = bytearray()
    with (
        httpx.Client(base_url=f"http://{front.outbound}", timeout=8) as client,
        pytest.raises(httpx.RemoteProtocolError, match="received 1000 bytes, expected 2000"),
        client.stream("GET", "/_stall/1000", headers={"Host": "web"}) as response,
    ):
        assert response.status_code == 200  # the head and the first half came through
        for chunk in response.iter_raw():
            received += chunk
    assert len(received) == 1000

    deadline = time.monotonic() + 10
    while not (cut := [e for e in list(tap) if e.get("path") == "/_stall/1000"]):
        assert time.monotonic() < deadline, tap[-3:]
        time.sleep(0.05)
    assert (cut[0]["status"], cut[0]["error"]) == (200, "upstream.body_timeout")
    logged = web.wait_for_log(lambda line: line.get("msg") == "response cut off")
    assert logged["reason"] == "upstream.body_timeout" and "1s" in logged["detail"]
    # the app got its connection closed, so the next request is served as usual
    with policy_mesh.client(front) as client:
        assert client.get("/", headers={"Host": "web"}).status_code == 200


def test_a_client_that_stops_reading_is_cut_off_after_the_idle_timeout(
    policy_mesh: PolicyMesh,
) -> None:
    _, front = web_behind_front(policy_mesh, front_idle="1s")
    size = 64 * 2**20  # far more than the socket buffers on the way hold
    host, port = front.outbound.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(f"GET /_bytes/{size} HTTP/1.1\r\nHost: web\r\n\r\n".encode())
        cut = front.wait_for_log(lambda line: line.get("reason") == "client.write_timeout")
        assert cut["msg"] == "client stopped reading; connection cut"
        received = 0
        try:
            while data := client.recv(2**20):
                received += len(data)
        except ConnectionResetError:
            pass  # what was still buffered for it is dropped
    assert 0 < received < size


def test_an_admin_connection_that_sends_nothing_is_closed_after_the_idle_timeout(
    policy_mesh: PolicyMesh,
) -> None:
    web_behind_front(policy_mesh, web_idle="1s")
    with socket.socket(socket.AF_UNIX) as admin:
        admin.settimeout(10)
        admin.connect(str(policy_mesh.root / "run/vmesh/web.sock"))
        admin.sendall(b"GET /ready HTTP/1.1\r\nHost: admin\r\n")  # a head that never ends
        assert admin.recv(65536) == b""  # closed by the proxy, not by the 10 s timeout
