"""Retries through real proxies: a 20 %-failing backend looks healthy, and against a dead one
the budget caps the extra load at its ratio, so retries never multiply an outage."""

import time

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401

POLICY = """\
kind: HTTPRoute
name: flaky
service: flaky
rules:
  - retry: {on: [5xx], attempts: 2, backoff: {base: 1ms, max: 5ms}}
---
kind: HTTPRoute
name: dead
service: dead
rules:
  - retry: {on: [5xx], attempts: 2, backoff: {base: 1ms, max: 5ms}}
---
kind: ServicePolicy
service: dead
retry_budget: {ratio: 0.2, min_per_second: 1, window: 10s}
circuit_breaker: {consecutive_failures: 10000}   # keep the dead instance in: this is a storm
"""


def test_retries_hide_failures_and_the_budget_caps_a_storm(policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("retries.yaml", POLICY)
    flaky, _ = policy_mesh.service("flaky", fail_every=5)
    dead, _ = policy_mesh.service("dead", fail_every=1)
    front = policy_mesh.mesh.start_proxy("front", 1)
    tap = policy_mesh.tap("front")
    front.wait_for_log(lambda line: line.get("msg") == "tap started")

    with policy_mesh.client(front) as client:
        statuses = [client.get("/", headers={"Host": "flaky"}).status_code for _ in range(400)]
    assert statuses == [200] * 400
    seen = policy_mesh.stats(flaky)
    # every 5th try failed and was retried: 400 successes took 499 tries
    assert seen["requests"] == 499 and seen["failed"] == 99
    metrics = policy_mesh.metrics("front")
    assert sample(metrics, "route_retry_total", dst_service="flaky", route="flaky") == 99
    deadline = time.monotonic() + 10  # each retry also shows in the request's tap event
    while sum(e["retries"] for e in list(tap) if e["route"] == "flaky") < 99:
        assert time.monotonic() < deadline, len(tap)
        time.sleep(0.05)

    with policy_mesh.client(front) as client:
        statuses = [client.get("/", headers={"Host": "dead"}).status_code for _ in range(300)]
    assert set(statuses) == {503}
    received = policy_mesh.stats(dead)["requests"]
    print(f"300 requests to a dead backend: {received} tries (900 without a budget)")
    # without a budget 900 tries; the budget allows 20 % of 300 plus 1/s over 10 s
    assert 300 < received <= 300 + 60 + 10
    retries = sample(policy_mesh.metrics("front"), "route_retry_total", dst_service="dead")
    assert retries == received - 300


ONE_BAD_INSTANCE = """\
kind: HTTPRoute
name: api
service: api
rules:
  - retry: {on: [5xx], attempts: 1, backoff: {base: 1ms, max: 1ms}}
---
kind: ServicePolicy
service: api
circuit_breaker: {consecutive_failures: 10000}   # keep the failing instance in rotation
"""


def test_a_retry_goes_to_another_instance(policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("api.yaml", ONE_BAD_INSTANCE)
    # the failing instance answers fast, so the latency-aware balancer keeps preferring it
    failing, _ = policy_mesh.service("api", fail_every=1, status=503)
    healthy, _ = policy_mesh.service("api", delay=0.05)
    front = policy_mesh.mesh.start_proxy("front", 1)

    with policy_mesh.client(front) as client:
        statuses = [client.get("/", headers={"Host": "api"}).status_code for _ in range(20)]
    assert statuses == [200] * 20  # each retry went to the instance it had not tried
    assert policy_mesh.stats(failing)["failed"] > 10  # first attempts did prefer the fast one
    assert policy_mesh.stats(healthy)["requests"] == 20
