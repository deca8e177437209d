"""Mirroring through real proxies: copies reach a live shadow, a dead shadow changes nothing for
the primary, each shadow's outcomes are counted on their own, and requests without a body are
copied too."""

import time

from tests.integration.mesh import wait_until
from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401
from tests.support import free_port

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


def test_dead_shadow_is_invisible_to_the_primary(policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("mirror.yaml", POLICY)
    primary, _ = policy_mesh.service("api")
    shadow, _ = policy_mesh.service("api-shadow")
    policy_mesh.mesh.add_instance("api-dark", free_port(), "api-dark-1")  # nobody listens
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


def test_requests_without_a_body_are_mirrored_too(policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("mirror.yaml", POLICY.split("---")[0])
    policy_mesh.service("api")
    shadow, _ = policy_mesh.service("api-shadow")
    front = policy_mesh.mesh.start_proxy("front", 1)

    with policy_mesh.client(front) as client:
        for i in range(20):
            response = client.get(f"/items/{i % 2}", headers={"Host": "api"})
            assert response.status_code == 200 and response.json()["name"] == "api"

    wait_until(lambda: policy_mesh.stats(shadow)["requests"] == 20, within=20,
               what="every GET copied to the shadow")
    assert policy_mesh.stats(shadow)["by_path"] == {"/items/0": 10, "/items/1": 10}
