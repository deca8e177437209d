"""A response whose head comes at once and whose body comes late (a download, a stream) counts
in the latency metrics and golden stats by the time to its head, as Linkerd's time to first
byte does: a slow body is not a slow service. Tap still shows the whole exchange."""

from tests.integration.mesh import wait_until
from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401

BODY_DELAY_MS = 1500


def test_a_late_body_does_not_count_as_latency(policy_mesh: PolicyMesh) -> None:
    policy_mesh.service("api")
    front = policy_mesh.mesh.start_proxy("front", 1)
    tap = policy_mesh.tap("front")
    front.wait_for_log(lambda line: line.get("msg") == "tap started")
    with policy_mesh.client(front) as client:
        answer = client.get(f"/_late_body/{BODY_DELAY_MS}", headers={"Host": "api"})
    assert (answer.status_code, answer.text) == (200, "ok")

    metrics = policy_mesh.metrics("front")
    labels = {"direction": "outbound", "dst_service": "api"}
    assert sample(metrics, "response_latency_ms_count", **labels) == 1
    assert sample(metrics, "response_latency_ms_sum", **labels) < BODY_DELAY_MS
    [row] = policy_mesh.admin("front", "/v1/stats?window=60s")["upstreams"]
    assert row["p99_ms"] < BODY_DELAY_MS
    wait_until(lambda: tap, what="the request in tap")
    assert tap[0]["latency_ms"] >= BODY_DELAY_MS
