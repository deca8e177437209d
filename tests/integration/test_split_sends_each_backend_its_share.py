"""Traffic split and A/B through real proxies: weights hold, headers pick the canary, metrics per
backend let a canary be judged, and /v1/config names the file each rule came from."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401

REQUESTS = 2000
POLICY = """\
kind: HTTPRoute
name: api-canary
service: api
rules:
  - name: canary-header
    matches: [{headers: {x-canary: "1"}}]
    backends: [{service: api-v2}]
  - name: split
    backends:
      - {service: api-v1, weight: 90}
      - {service: api-v2, weight: 10}
"""


def test_ninety_ten_split_and_header_routing(policy_mesh: PolicyMesh) -> None:
    policy_file = policy_mesh.write_policy("10-api.yaml", POLICY)
    policy_mesh.service("api-v1")
    policy_mesh.service("api-v2")
    front = policy_mesh.mesh.start_proxy("front", 1)

    def batch(count: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        with policy_mesh.client(front) as client:
            for _ in range(count):
                response = client.get("/items", headers={"Host": "api"})
                assert response.status_code == 200, (response.headers, response.text)
                seen[response.json()["name"]] += 1
        return seen

    with ThreadPoolExecutor(4) as pool:  # four keep-alive clients at once
        counts = sum(pool.map(batch, [REQUESTS // 4] * 4), Counter())
    assert sum(counts.values()) == REQUESTS
    print(f"split over {REQUESTS} requests: {dict(counts)}")
    # binomial(2000, 0.1): sd = 13.4; 5 sd = 67 requests = 3.4 points of the 10 % share
    assert abs(counts["api-v2"] - REQUESTS * 0.1) <= 67, counts

    with policy_mesh.client(front) as client:
        names = {client.get("/", headers={"Host": "api", "x-canary": "1"}).json()["name"]
                 for _ in range(50)}
    assert names == {"api-v2"}

    metrics = policy_mesh.metrics("front")
    v2 = sample(metrics, "route_backend_request_total", dst_service="api", route="api-canary/split",
                backend="api-v2", status_code="200")
    assert v2 == counts["api-v2"]
    assert sample(metrics, "route_backend_request_total", dst_service="api",
                  route="api-canary/canary-header", backend="api-v2") == 50

    documents = policy_mesh.admin("front", "/v1/config")["policy"]["documents"]
    assert [(d["kind"], d["name"], d["source"]) for d in documents] == [
        ("HTTPRoute", "api-canary", {"file": str(policy_file), "document": 1, "line": 1})
    ]
