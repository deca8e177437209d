"""An instance that refuses connections costs its callers no failed request: nothing was sent,
so the proxy tries another instance (whatever the method), as Linkerd does."""


import httpx
import pytest

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.support import free_port


@pytest.fixture
def mesh(tmp_path):
    mesh = Mesh(tmp_path)
    # 50 ms answers keep the live instance dearer than the refusing one's untried 30 ms
    # (peak-EWMA), so the balancer is sure to pick the refusing one
    backend = start_backend("web", delay=0.05)
    yield mesh, backend
    mesh.stop()
    backend.stop()


def test_posts_reach_the_live_instance_while_another_refuses(mesh) -> None:
    mesh, backend = mesh
    mesh.start_proxy("web", backend.port)
    mesh.add_instance("web", free_port(), "web-dead")
    front = mesh.start_proxy("front", 1)
    with httpx.Client(base_url=f"http://{front.outbound}", headers={"host": "web"}) as client:
        statuses = [client.post("/orders", content=b"{}").status_code for _ in range(20)]
    assert statuses == [200] * 20
    skipped = front.wait_for_log(lambda r: r.get("msg") == "instance refused the connection; "
                                 "trying another")
    assert skipped["instance"] == "web-dead"


def test_when_every_instance_refuses_the_caller_gets_502_naming_the_cause(mesh) -> None:
    mesh, _backend = mesh
    mesh.add_instance("web", free_port(), "web-dead-1")
    mesh.add_instance("web", free_port(), "web-dead-2")
    front = mesh.start_proxy("front", 1)
    with httpx.Client(base_url=f"http://{front.outbound}", headers={"host": "web"}) as client:
        response = client.get("/")
    assert response.status_code == 502
    assert response.headers["vmesh-error"] == "upstream.connect_failed"
