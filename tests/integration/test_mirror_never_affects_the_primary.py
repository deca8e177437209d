"""Mirroring through real proxies: copies reach a live shadow, a dead shadow changes nothing for
the primary, and each shadow's outcomes are counted on their own."""

import socket
import time

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401

POLICY = """\
kind: Mirror
service: api
to: api-shadow
percent: 100
---
kind: Mirror
service: api
to: api-dark
percent: 100
"""
REQUESTS = 100


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dead_shadow_is_invisible_to_the_primary(policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("mirror.yaml", POLICY)
    primary, _ = policy_mesh.service("api")
    shadow, _ = policy_mesh.service("api-shadow")
    policy_mesh.mesh.add_instance("api-dark", closed_port(), "api-dark-1")  # nobody listens
    front = policy_mesh.mesh.start_proxy("front", 1)

    with policy_mesh.client(front) as client:
        for i in range(REQUESTS):
            response = client.post("/orders", headers={"Host": "api"}, content=f"order {i}")
            assert response.status_code == 200 and response.json()["name"] == "api"
    assert policy_mesh.stats(primary)["requests"] == REQUESTS

    deadline = time.monotonic() + 20
    while True:
        metrics = policy_mesh.metrics("front")
        sent = sample(metrics, "mirror_request_total", shadow="api-shadow", outcome="sent")
        failed = sample(metrics, "mirror_request_total", shadow="api-dark", outcome="failed")
        if (sent, failed) == (REQUESTS, REQUESTS):
            break
        assert time.monotonic() < deadline, (sent, failed)
        time.sleep(0.1)
    copies = policy_mesh.stats(shadow)
    assert copies["requests"] == REQUESTS and copies["by_path"] == {"/orders": REQUESTS}
    # the copies are not primary traffic: the primary's route metrics count only its requests
    assert sample(metrics, "route_backend_request_total", dst_service="api", backend="api") \
        == REQUESTS
