"""An app that stalls in the middle of a response body, through real proxies: its proxy gives up
after the idle timeout and closes the connection, so the client sees a cut response instead of
waiting for ever, and tap says why."""

import time

import httpx
import pytest

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture  # noqa: F401
from tests.integration.processes import start_backend


def test_a_response_body_that_stalls_is_cut_off_after_the_idle_timeout(
    policy_mesh: PolicyMesh,
) -> None:
    mesh = policy_mesh.mesh
    app = start_backend("web")
    policy_mesh.backends.append(app)
    web = mesh.start_proxy("web", app.port, idle="1s")
    front = mesh.start_proxy("front", 1)
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
    # the app got its connection closed, so the next request is served as usual
    with policy_mesh.client(front) as client:
        assert client.get("/", headers={"Host": "web"}).status_code == 200
