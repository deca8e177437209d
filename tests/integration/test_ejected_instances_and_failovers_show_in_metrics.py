"""What the balancer can send to shows on /metrics, for alerts to watch: instances a circuit
breaker ejected (`outbound_balancer_endpoints{endpoint_state="ejected"}`, beside the ready
ones) and services whose requests go to a failover destination
(`outbound_failover_active{failover_to}`), through real proxies."""

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401

POLICY = """\
kind: ServicePolicy
service: api
circuit_breaker: {consecutive_failures: 3, backoff: {min: 60s, max: 60s, jitter: 0}}
---
kind: ServicePolicy
service: orders
failover: [api]
"""
MAX_REQUESTS = 60


def _ejected(policy_mesh: PolicyMesh) -> bool:
    [api] = [u for u in policy_mesh.admin("front", "/v1/endpoints")["upstreams"]
             if u["service"] == "api"]
    return any(i["breaker"]["state"] == "open" for i in api["instances"])


def test_an_ejected_instance_and_a_failover_are_served_as_gauges(
        policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("api.yaml", POLICY)
    # the healthy instance is slower, so the latency-aware balancer prefers the failing one
    policy_mesh.service("api", delay=0.1)
    doomed, _ = policy_mesh.service("api")
    front = policy_mesh.mesh.start_proxy("front", 1)
    doomed.stop()  # its proxy now answers 502 (app.connect_failed): front's breaker counts them

    with policy_mesh.client(front) as client:
        for _ in range(MAX_REQUESTS):
            client.get("/", headers={"Host": "api"})
            if _ejected(policy_mesh):
                break
        assert _ejected(policy_mesh), policy_mesh.admin("front", "/v1/endpoints")
        before_failover = policy_mesh.metrics("front")
        # orders has no instance at all: its requests go to api, the failover
        assert client.get("/", headers={"Host": "orders"}).status_code == 200

    metrics = policy_mesh.metrics("front")
    endpoints = "outbound_balancer_endpoints"
    assert sample(metrics, endpoints, dst_service="api", endpoint_state="ready") == 1
    assert sample(metrics, endpoints, dst_service="api", endpoint_state="ejected") == 1
    assert sample(metrics, endpoints, dst_service="orders", endpoint_state="ready") == 0
    assert sample(before_failover, "outbound_failover_active") == 0
    assert sample(metrics, "outbound_failover_active") == 1
    assert sample(metrics, "outbound_failover_active", dst_service="orders",
                  failover_to="api") == 1
