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


def test_requests_without_a_body_are_mirrored_too_untraced_on_pooled_connections(
    policy_mesh: PolicyMesh,
) -> None:
    policy_mesh.write_policy("mirror.yaml", POLICY.split("---")[0])
    primary, _ = policy_mesh.service("api")
    shadow, _ = policy_mesh.service("api-shadow")
    front = policy_mesh.mesh.start_proxy("front", 1)
    sampled = {"Host": "api", "traceparent": f"00-{'4b' * 16}-{'00f0' * 4}-01"}

    def copies_sent() -> float:
        return sample(policy_mesh.metrics("front"), "mirror_request_total", outcome="sent")

    def connections_opened() -> float:
        return sample(policy_mesh.metrics("front"), "connection_open_total",
                      direction="outbound")

    with policy_mesh.client(front) as client:
        for i in range(20):
            response = client.get(f"/items/{i % 2}", headers=sampled)
            assert response.status_code == 200 and response.json()["name"] == "api"
        wait_until(lambda: copies_sent() == 20, within=20, what="every GET copied")
        opened = connections_opened()
        # with a connection to each idle in the pool, a request and its copy open none
        assert client.get("/items/0", headers=sampled).status_code == 200
        wait_until(lambda: copies_sent() == 21, within=20, what="the last GET copied")
    assert connections_opened() == opened

    copies = policy_mesh.stats(shadow)
    assert copies["by_path"] == {"/items/0": 11, "/items/1": 10}
    # the shadow's work is no part of the caller's trace; the primary's is
    assert (copies["traced"], policy_mesh.stats(primary)["traced"]) == (0, 21)
