"""Route timeouts through real proxies: a slow backend gets 504 with the timeout that fired, and
each per-try timeout is a retry when the route allows one."""

import time

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401
from tests.integration.processes import start_backend

POLICY = """\
kind: HTTPRoute
name: slow
service: slow
rules:
  - name: whole
    matches: [{path: {prefix: /whole}}]
    timeout: {request: 200ms}
  - name: tries
    matches: [{path: {prefix: /tries}}]
    timeout: {per_try: 100ms, request: 5s}
    retry: {on: [gateway-error], attempts: 1, backoff: {base: 1ms, max: 1ms}}
"""


def test_slow_backend_gets_504_with_the_timeout_that_fired(policy_mesh: PolicyMesh) -> None:
    policy_mesh.write_policy("slow.yaml", POLICY)
    slow, _ = policy_mesh.service("slow", delay=2.0)
    front = policy_mesh.mesh.start_proxy("front", 1)

    with policy_mesh.client(front) as client:
        whole = client.get("/whole", headers={"Host": "slow"})
        tries = client.get("/tries", headers={"Host": "slow"})
    assert (whole.status_code, whole.headers["vmesh-error"]) == (504, "timeout.request")
    assert (tries.status_code, tries.headers["vmesh-error"]) == (504, "timeout.per_try")
    deadline = time.monotonic() + 10  # the backend counts a request when it arrives
    while (seen := policy_mesh.stats(slow)["by_path"]) != {"/whole": 1, "/tries": 2}:
        assert time.monotonic() < deadline, seen  # /tries: the first try and one retry
        time.sleep(0.05)
    metrics = policy_mesh.metrics("front")
    assert sample(metrics, "route_retry_total", dst_service="slow", route="slow/tries") == 1


def test_an_app_that_does_not_answer_gets_504_from_its_own_proxy(
    policy_mesh: PolicyMesh,
) -> None:
    app = start_backend("hung", delay=5.0)
    policy_mesh.backends.append(app)
    policy_mesh.mesh.start_proxy("hung", app.port, idle="1s")
    front = policy_mesh.mesh.start_proxy("front", 1)
    with policy_mesh.client(front) as client:
        answer = client.get("/", headers={"Host": "hung"})
    assert (answer.status_code, answer.headers["vmesh-error"]) == (504, "app.timeout")
    assert answer.text.startswith("vmesh hung-1 inbound: the app sent no response in 1s")
