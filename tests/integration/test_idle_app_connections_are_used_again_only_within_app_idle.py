"""An idle connection to the app is used again only within `[timeouts] app_idle`: an app whose
keep-alive timeout is longer never has a request go out on a connection it is closing."""

import os
import signal
import time

from tests.integration.mesh import wait_until
from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture  # noqa: F401


def _app_idle(policy_mesh: PolicyMesh) -> float:
    return policy_mesh.admin("web", "/v1/config")["service"]["timeouts"]["app_idle"]


def test_a_connection_idle_past_app_idle_is_not_used_again(policy_mesh: PolicyMesh) -> None:
    app, web = policy_mesh.service("web")
    front = policy_mesh.mesh.start_proxy("front", 1)
    path = policy_mesh.root / "etc/vmesh/services/web.toml"
    path.write_text(path.read_text().replace('drain = "10s"', 'drain = "10s"\napp_idle = "0.2s"'))
    os.kill(web.proc.pid, signal.SIGHUP)  # the setting applies live
    wait_until(lambda: _app_idle(policy_mesh) == 0.2, what="app_idle of 0.2 s")

    with policy_mesh.client(front) as client:
        first = client.get("/first", headers={"Host": "web"})
        # from now on the app closes a kept-alive connection when a request comes on it
        policy_mesh.control(app, drop_reused=True)
        time.sleep(0.5)  # the connection idles past app_idle: the passing time is under test
        post = client.post("/order", headers={"Host": "web"}, content=b"order=1")

    assert (first.status_code, post.status_code) == (200, 200)
    stats = policy_mesh.stats(app)
    # the POST went out on a new connection: the app dropped none and saw it once
    assert (stats["by_path"], stats["dropped"]) == ({"/first": 1, "/order": 1}, 0)
