"""Policy from Consul KV (`vmesh/policy/...`): validated like files, reloaded on change, a bad
key refused with key, line and reason while the old policy stays in force.

No Consul binary is packaged for Debian, so the agent is tests/fake_consul.py, which keeps the
documented KV contract (blocking `?index`, `X-Consul-Index`, base64 values, 404 for an empty
prefix) on a real loopback socket.
"""

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import consul
import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import Mesh, wait_until
from tests.integration.policy_mesh import PolicyMesh
from tests.unit.policy_helpers import eventually
from vm_mesh.policy.consul_source import ConsulPolicySource, watch
from vm_mesh.policy.store import PolicyStore

ROUTE = "kind: HTTPRoute\nname: {name}\nservice: api\nrules: [{{}}]\n"


async def test_consul_keys_join_the_file_policy(agent: FakeConsul, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kind: ServicePolicy\nservice: api\n")
    store = PolicyStore(tmp_path)
    store.load_initial()
    source = ConsulPolicySource(consul.Consul(host="127.0.0.1", port=agent.port))
    watcher = asyncio.create_task(watch(source, store.set_extra_texts, wait="1s"))
    try:
        agent.kv_put("vmesh/policy/api", ROUTE.format(name="from-kv"))
        await eventually(lambda: len(store.current) == 2)
        sources = [d["source"]["file"] for d in store.describe()["documents"]]
        assert sources == [str(tmp_path / "a.yaml"), "consul:vmesh/policy/api"]
        agent.kv_put("vmesh/policy/api", ROUTE.format(name="from-kv") + "  bad: 1\n")
        await eventually(lambda: store.errors)
        assert store.errors[0].file == "consul:vmesh/policy/api"
        assert store.current.routes_for("api")[0].doc.name == "from-kv"
        agent.kv_put("vmesh/policy/api", ROUTE.format(name="fixed"))
        await eventually(lambda: store.current.routes_for("api")[0].doc.name == "fixed")
        agent.kv_delete("vmesh/policy/", recurse=True)
        await eventually(lambda: len(store.current) == 1)
    finally:
        watcher.cancel()


async def test_a_kv_change_refused_beside_a_bad_file_applies_once_the_file_is_fixed(
    agent: FakeConsul, tmp_path: Path
) -> None:
    good = "kind: ServicePolicy\nservice: api\n"
    (tmp_path / "a.yaml").write_text(good)
    store = PolicyStore(tmp_path)
    store.load_initial()
    source = ConsulPolicySource(consul.Consul(host="127.0.0.1", port=agent.port))
    delivered: list[tuple[tuple[str, str], ...]] = []

    def on_change(texts: tuple[tuple[str, str], ...]) -> None:
        delivered.append(texts)
        store.set_extra_texts(texts)

    watcher = asyncio.create_task(watch(source, on_change, wait="1s"))
    try:
        await eventually(lambda: delivered)  # the empty prefix, at first
        (tmp_path / "a.yaml").write_text(good + "bad: 1\n")
        assert not store.reload("file-change")
        agent.kv_put("vmesh/policy/api", ROUTE.format(name="from-kv"))
        await eventually(lambda: delivered[-1])  # refused, with the file still bad
        assert len(store.current) == 1
        (tmp_path / "a.yaml").write_text(good)
        assert store.reload("file-change")
        assert [r.doc.name for r in store.current.routes_for("api")] == ["from-kv"]
    finally:
        watcher.cancel()


async def test_a_watch_of_keys_that_churn_asks_at_a_bounded_rate(agent: FakeConsul) -> None:
    """Consul's docs: a blocking loop over keys that change fast turns into a busy loop (client
    CPU, load on the servers) unless it is rate-limited. The policy watch asks twice at once,
    then once per `query_interval_s` while every answer brings a change."""
    source = ConsulPolicySource(consul.Consul(host="127.0.0.1", port=agent.port))
    delivered: list[tuple[tuple[str, str], ...]] = []
    watcher = asyncio.create_task(watch(source, delivered.append, wait="1s",
                                        query_interval_s=0.5))

    def asked() -> int:
        return sum(p.startswith("/v1/kv/vmesh/policy/") for p in list(agent.requests))

    def churn() -> None:  # a key rewritten again and again: every answer differs from the last
        for n in range(600):
            agent.kv_put("vmesh/policy/api", ROUTE.format(name=f"r{n % 2}"))
            time.sleep(0.003)

    try:
        await eventually(lambda: delivered)
        before, started = asked(), time.monotonic()
        await asyncio.to_thread(churn)
        queries, elapsed = asked() - before, time.monotonic() - started
        assert queries <= 2 + elapsed / 0.5 + 1
        agent.kv_put("vmesh/policy/api", ROUTE.format(name="settled"))
        await eventually(lambda: delivered[-1] == (
            ("consul:vmesh/policy/api", ROUTE.format(name="settled")),))  # it still follows
    finally:
        watcher.cancel()


SPLIT = """\
kind: HTTPRoute
name: api-canary
service: api
rules:
  - matches: [{{headers: {{x-canary: "1"}}}}]
    backends: [{{service: {canary}}}]
  - backends: [{{service: {stable}}}]
"""


@pytest.fixture
def consul_mesh(tmp_path: Path, agent: FakeConsul) -> Iterator[PolicyMesh]:
    token = 'consul_token = "s3cr3t-acl-token"\n'  # the fake agent takes any token
    mesh = PolicyMesh(Mesh(tmp_path, discovery=agent.discovery_table() + token))
    try:
        yield mesh
    finally:
        mesh.mesh.stop()
        for backend in mesh.backends:
            backend.stop()


def test_route_put_into_kv_steers_traffic_and_a_bad_one_is_refused(
    agent: FakeConsul, consul_mesh: PolicyMesh
) -> None:
    consul_mesh.service("api-v1")
    consul_mesh.service("api-v2")
    front = consul_mesh.mesh.start_proxy("front", 1)
    conn = http.client.HTTPConnection("127.0.0.1", front.ports["outbound"], timeout=10)

    def answer(**headers: str) -> str:
        conn.request("GET", "/", headers={"Host": "api", **headers})
        response = conn.getresponse()
        body = response.read()
        return json.loads(body)["name"] if response.status == 200 else str(response.status)

    assert answer() == "503"  # no route and no instance of `api`: nothing to send it to

    agent.kv_put("vmesh/policy/api", SPLIT.format(canary="api-v2", stable="api-v1"))
    wait_until(lambda: answer() == "api-v1", within=15, what="the KV route taking effect")
    assert answer(**{"x-canary": "1"}) == "api-v2"
    config = consul_mesh.admin("front", "/v1/config")
    [document] = config["policy"]["documents"]
    assert document["source"]["file"] == "consul:vmesh/policy/api"
    assert config["discovery"]["backend"] == "consul"
    assert config["discovery"]["consul_token"] == "<redacted>"
    assert "s3cr3t" not in json.dumps(config)

    # a broken document: refused with key, line and reason; the route in force stays
    agent.kv_put("vmesh/policy/api",
                 SPLIT.format(canary="api-v1", stable="api-v2") + "    timeout: 2\n")
    refusal = front.wait_for_log(lambda line: line.get("event") == "policy_refused"
                                 and line.get("trigger") == "consul")
    assert refusal["errors"] == [
        "consul:vmesh/policy/api:8: HTTPRoute api-canary: rules[1].timeout: Input should be "
        "a mapping of Timeouts fields (got 2)"
    ]
    assert answer() == "api-v1" and answer(**{"x-canary": "1"}) == "api-v2"

    agent.kv_put("vmesh/policy/api", SPLIT.format(canary="api-v1", stable="api-v2"))
    wait_until(lambda: answer() == "api-v2", within=15, what="the fixed KV route taking effect")
    conn.close()
