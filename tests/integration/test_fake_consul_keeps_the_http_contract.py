"""The fake agent answers like Consul's documented HTTP API, seen through py-consul and raw HTTP.

Consul tests are only as good as this fake, so its contract is checked
directly: entry shapes, `X-Consul-Index`, blocking with `index`/`wait`, the
`passing` filter and the documented 400s.
"""

import secrets
import socket
import time

import consul
import httpx
import pytest

from tests.fake_consul import FakeConsul


def test_registered_service_is_an_entry_of_node_service_checks(agent: FakeConsul) -> None:
    client = consul.Consul(port=agent.port)
    name = f"api-{secrets.token_hex(3)}"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        check = consul.Check.tcp("127.0.0.1", port, "100ms", deregister="1m")
        assert client.agent.service.register(name, service_id=f"{name}-1", address="127.0.0.1",
                                             port=port, meta={"zone": "a"}, check=check)
        index, everything = client.health.service(name)
        assert int(index) >= 1 and len(everything) == 1
        entry = everything[0]
        assert set(entry) == {"Node", "Service", "Checks"}
        assert entry["Service"]["Port"] == port and entry["Service"]["Meta"] == {"zone": "a"}
        assert entry["Service"]["Tags"] == []
        assert {c["CheckID"] for c in entry["Checks"]} == {"serfHealth", f"service:{name}-1"}

        deadline = time.monotonic() + 10
        while not client.health.service(name, passing=True)[1]:  # the TCP check really runs
            assert time.monotonic() < deadline, "the TCP check never passed"
            time.sleep(0.05)
    assert client.agent.service.deregister(f"{name}-1")
    assert client.health.service(name)[1] == []  # unknown service: [] not null


def test_agent_services_lists_what_was_registered_with_the_agent(agent: FakeConsul) -> None:
    client = consul.Consul(port=agent.port)
    assert client.agent.services() == {}
    assert client.agent.service.register("api", service_id="api-1", port=4143,
                                         meta={"zone": "a"})
    listed = client.agent.services()
    assert list(listed) == ["api-1"]
    assert {k: listed["api-1"][k] for k in ("ID", "Service", "Port", "Address", "Meta")} == {
        "ID": "api-1", "Service": "api", "Port": 4143, "Address": "", "Meta": {"zone": "a"}}
    assert client.agent.service.deregister("api-1")
    assert client.agent.services() == {}


def test_deregistering_an_id_the_agent_does_not_have_is_404(agent: FakeConsul) -> None:
    answer = httpx.put(f"http://127.0.0.1:{agent.port}/v1/agent/service/deregister/api")
    assert answer.status_code == 404
    assert answer.text == ('Unknown service ID "api". '
                           "Ensure that the service ID is passed, not the service name.")
    assert consul.Consul(port=agent.port).agent.service.deregister("api") is False


def test_blocking_query_waits_for_a_change_or_the_wait(agent: FakeConsul) -> None:
    base = f"http://127.0.0.1:{agent.port}/v1/health/service/nothing"
    first = httpx.get(base)
    index = int(first.headers["X-Consul-Index"])
    started = time.monotonic()
    blocked = httpx.get(f"{base}?index={index}&wait=300ms", timeout=10)
    assert time.monotonic() - started >= 0.3  # no change: held for the whole wait
    assert blocked.status_code == 200 and blocked.json() == []
    assert int(blocked.headers["X-Consul-Index"]) == index  # timeout: same index


@pytest.mark.parametrize(
    ("query", "message"),
    [("wait=soon&index=1", "Invalid wait time"), ("index=-1", "Invalid index"),
     ("passing=maybe", "Invalid value for ?passing")],
)
def test_bad_query_parameters_are_400_with_consuls_words(
    agent: FakeConsul, query: str, message: str
) -> None:
    answer = httpx.get(f"http://127.0.0.1:{agent.port}/v1/health/service/api?{query}")
    assert (answer.status_code, answer.text) == (400, message)


def test_catalog_lists_every_service_once_with_the_union_of_its_tags(agent: FakeConsul) -> None:
    client = consul.Consul(port=agent.port)
    name = f"api-{secrets.token_hex(3)}"
    client.agent.service.register(name, service_id=f"{name}-1", port=1, tags=["v1"])
    client.agent.service.register(name, service_id=f"{name}-2", port=2, tags=["v2", "v1"])
    client.agent.service.register(f"{name}-db", port=3)
    index, services = client.catalog.services()
    assert int(index) >= 1
    assert services == {name: ["v1", "v2"], f"{name}-db": []}


def test_dc_asks_the_datacenter_of_the_federation_it_names(
    agent: FakeConsul, east: FakeConsul
) -> None:
    client = consul.Consul(port=agent.port)
    name = f"api-{secrets.token_hex(3)}"
    east.register({"ID": f"{name}-east", "Name": name, "Address": "127.0.0.1", "Port": 1})
    assert client.catalog.datacenters() == ["dc1", "east"]  # its own first: the nearest
    assert consul.Consul(port=east.port).catalog.datacenters() == ["east", "dc1"]

    assert client.health.service(name)[1] == []  # without dc: the agent's own datacenter
    index, (entry,) = client.health.service(name, dc="east")
    assert entry["Service"]["ID"] == f"{name}-east"
    assert (entry["Node"]["Node"], entry["Node"]["Datacenter"]) == ("fake-node-east", "east")
    assert int(index) == east.index  # east's raft index, not this agent's
    assert client.catalog.services(dc="east")[1] == {name: []}
    assert client.health.service(name, dc="dc1")[1] == []

    # a blocking query to east follows east's index
    east.register({"ID": f"{name}-east-2", "Name": name, "Address": "127.0.0.1", "Port": 2})
    changed = httpx.get(f"http://127.0.0.1:{agent.port}/v1/health/service/{name}"
                        f"?dc=east&index={index}&wait=5s", timeout=10)
    assert len(changed.json()) == 2 and int(changed.headers["X-Consul-Index"]) == east.index


def test_unknown_or_unreachable_datacenters_are_500_in_consuls_words(
    agent: FakeConsul, east: FakeConsul
) -> None:
    base = f"http://127.0.0.1:{agent.port}"
    for path in ("/v1/health/service/api?dc=west", "/v1/catalog/services?dc=west",
                 "/v1/kv/x?dc=west"):
        answer = httpx.get(base + path)
        assert (answer.status_code, answer.text) == (500, "No path to datacenter")
        assert "X-Consul-Index" not in answer.headers
    with pytest.raises(consul.ConsulException, match="500 No path to datacenter"):
        consul.Consul(port=agent.port).health.service("api", dc="west")

    east.stop()  # known over the WAN, but no server answers there
    answer = httpx.get(f"{base}/v1/health/service/api?dc=east")
    assert (answer.status_code, answer.text) == (500, "Remote DC has no server currently reachable")
    assert httpx.get(f"{base}/v1/catalog/datacenters").json() == ["dc1", "east"]


def test_the_token_of_each_request_is_recorded_wherever_it_is_sent(agent: FakeConsul) -> None:
    base = f"http://127.0.0.1:{agent.port}/v1/catalog/services"
    httpx.get(base, headers={"X-Consul-Token": "from-header"})
    httpx.get(base, headers={"Authorization": "Bearer from-bearer"})
    httpx.get(f"{base}?token=from-query")
    httpx.get(base)
    assert agent.tokens == ["from-header", "from-bearer", "from-query", None]


def test_an_agent_enforcing_acls_refuses_unknown_tokens_and_filters_for_anonymous() -> None:
    agent = FakeConsul(acl_token="the-secret")
    agent.start()
    try:
        allowed = consul.Consul(port=agent.port, token="the-secret")
        assert allowed.agent.service.register("api", service_id="api-1", port=4143)
        assert list(allowed.health.service("api")[1]) != []

        with pytest.raises(consul.ACLPermissionDenied, match=r"^ACL not found$"):
            consul.Consul(port=agent.port, token="another").health.service("api")
        anonymous = consul.Consul(port=agent.port)
        with pytest.raises(consul.ACLPermissionDenied, match=r"^Permission denied$"):
            anonymous.agent.service.register("web", service_id="web-1", port=4143)
        listed = httpx.get(f"http://127.0.0.1:{agent.port}/v1/health/service/api")
        assert (listed.status_code, listed.json()) == (200, [])
        assert listed.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
        assert anonymous.catalog.datacenters() == ["dc1"]
        assert agent.tokens[:2] == ["the-secret", "the-secret"] and agent.tokens[2] == "another"
    finally:
        agent.stop()
