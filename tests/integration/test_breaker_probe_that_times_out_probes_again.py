"""A half-open probe that times out through real proxies: the breaker re-opens and probes again
after the next backoff (the instance is readmitted once it answers), and the time the probe
waited shows in the instance's latency estimate."""

import time

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture  # noqa: F401

POLICY = """\
kind: ServicePolicy
service: api
circuit_breaker: {consecutive_failures: 2, backoff: {min: 200ms, max: 400ms, jitter: 0}}
---
kind: HTTPRoute
name: api
service: api
rules:
  - timeout: {per_try: 300ms, request: 5s}
"""


def instance(policy_mesh: PolicyMesh) -> dict:
    upstreams = policy_mesh.admin("front", "/v1/endpoints")["upstreams"]
    [api] = [u for u in upstreams if u["service"] == "api"]
    [only] = api["instances"]
    return only


def test_a_probe_that_times_out_does_not_shut_the_instance_out(policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("api.yaml", POLICY)
    backend, _ = policy_mesh.service("api")
    front = policy_mesh.mesh.start_proxy("front", 1)
    with policy_mesh.client(front) as client:
        assert client.get("/", headers={"Host": "api"}).status_code == 200
        policy_mesh.control(backend, fail_every=1, status=503)
        assert [client.get("/", headers={"Host": "api"}).status_code for _ in range(2)] == [503] * 2
        assert instance(policy_mesh)["breaker"]["state"] == "open"

        policy_mesh.control(backend, fail_every=0, delay=3)  # it stops answering in time
        deadline = time.monotonic() + 10
        while (probe := client.get("/", headers={"Host": "api"})).status_code == 503:
            assert probe.headers["vmesh-error"] == "all_endpoints_ejected"
            assert time.monotonic() < deadline, instance(policy_mesh)
            time.sleep(0.02)
        assert (probe.status_code, probe.headers["vmesh-error"]) == (504, "timeout.per_try")
        timed_out = instance(policy_mesh)
        assert timed_out["breaker"]["state"] == "open"
        # the probe's wait shows: about its 300 ms (the instance's clock starts a moment after
        # the per-try timeout's), far above the fast answers before it
        assert timed_out["ewma_ms"] >= 250

        policy_mesh.control(backend, delay=0)  # it recovers
        deadline = time.monotonic() + 10
        while (answer := client.get("/", headers={"Host": "api"})).status_code != 200:
            assert answer.headers["vmesh-error"] == "all_endpoints_ejected"
            assert time.monotonic() < deadline, instance(policy_mesh)
            time.sleep(0.02)
    assert instance(policy_mesh)["breaker"]["state"] == "closed"
