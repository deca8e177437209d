"""Circuit breaking through real proxies, configured by ServicePolicy: consecutive failures eject
a dead instance (state in /v1/endpoints), traffic goes to the healthy one, and a probe after the
backoff readmits the instance once it has recovered."""

import time

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture  # noqa: F401
from tests.integration.processes import start_backend

POLICY = """\
kind: ServicePolicy
service: api
circuit_breaker: {consecutive_failures: 3, backoff: {min: 300ms, max: 1s, jitter: 0}}
"""


def breaker_states(policy_mesh: PolicyMesh) -> dict[str, str]:
    upstreams = policy_mesh.admin("front", "/v1/endpoints")["upstreams"]
    [api] = [u for u in upstreams if u["service"] == "api"]
    return {i["id"]: i["breaker"]["state"] for i in api["instances"]}


def test_dead_instance_is_ejected_and_readmitted(policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("api.yaml", POLICY)
    # the healthy instance is much slower, so the latency-aware balancer prefers the other
    # one even when a loaded machine slows the failing path down
    healthy, _ = policy_mesh.service("api", delay=0.1)
    doomed, _ = policy_mesh.service("api")
    front = policy_mesh.mesh.start_proxy("front", 1)
    doomed_port = doomed.port
    doomed.stop()  # its proxy now answers 502 (app.connect_failed)

    with policy_mesh.client(front) as client:
        statuses = [client.get("/", headers={"Host": "api"}).status_code for _ in range(30)]
    # both start at the default latency, so the very first pick is a coin toss; then the
    # failing (fast) instance is preferred until three failures eject it
    assert statuses[:5].count(502) == 3 and statuses[3:5].count(200) >= 1
    assert breaker_states(policy_mesh) == {"api-1": "closed", "api-2": "open"}
    [api] = [u for u in policy_mesh.admin("front", "/v1/endpoints")["upstreams"]]
    ejections = {i["id"]: i["breaker"]["ejections"] for i in api["instances"]}["api-2"]
    # after that, only the single probe let through after each backoff fails
    assert statuses.count(502) == 3 + ejections - 1

    revived = start_backend("api", port=doomed_port)
    policy_mesh.backends.append(revived)
    deadline = time.monotonic() + 15
    with policy_mesh.client(front) as client:
        while policy_mesh.stats(revived)["requests"] == 0:
            assert time.monotonic() < deadline, breaker_states(policy_mesh)
            assert client.get("/", headers={"Host": "api"}).status_code == 200
            time.sleep(0.02)
    assert breaker_states(policy_mesh) == {"api-1": "closed", "api-2": "closed"}
    assert policy_mesh.stats(healthy)["requests"] > 20
