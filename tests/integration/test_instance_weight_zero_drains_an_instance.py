"""Instance weights from discovery through real proxies: weight 0 drains an instance while
another can serve, and the weight shows in /v1/endpoints."""

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture  # noqa: F401


def test_a_drained_instance_gets_no_requests_while_another_serves(
    policy_mesh: PolicyMesh,
) -> None:
    kept, _ = policy_mesh.service("api")
    drained, _ = policy_mesh.service("api")
    mesh = policy_mesh.mesh
    mesh.instances[-1]["weight"] = 0  # what `weight = 0` in its service file advertises
    mesh.write_endpoints()
    front = mesh.start_proxy("front", 1)

    with policy_mesh.client(front) as client:
        statuses = [client.get("/", headers={"Host": "api"}).status_code for _ in range(30)]
    assert statuses == [200] * 30
    assert (policy_mesh.stats(kept)["requests"], policy_mesh.stats(drained)["requests"]) == (30, 0)
    [api] = [u for u in policy_mesh.admin("front", "/v1/endpoints")["upstreams"]
             if u["service"] == "api"]
    assert {i["id"]: i["weight"] for i in api["instances"]} == {"api-1": 100, "api-2": 0}
