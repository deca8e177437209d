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
