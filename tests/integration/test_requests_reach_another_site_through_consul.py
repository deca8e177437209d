"""Multi-site over Consul WAN federation: an app asks for `api.east.mesh`, its proxy watches `api`
in datacenter east through its own agent (`?dc=east`) and sends the request over mTLS straight
to the east instance (one trust domain, one CA). A ServicePolicy `failover` sends the requests
for `api` to east while dc1 has no instance of it, and back once it has. A datacenter the agent
does not know is refused with its reason, not watched for ever; a proxy that discovers over mDNS
refuses every site name.

Each site has its own agent (tests/fake_consul.py, federated as over the WAN) and its own
VMESH_ROOT, whose mesh.toml points at that agent; both issue from one CA.
"""

import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.integration.mesh import get_via as get
from tests.integration.mesh import upstream_of as upstream
from tests.integration.processes import Process, start_backend

MDNS = 'backend = "mdns"\ninterfaces = ["127.0.0.1"]\n'


@dataclass
class Sites:
    home: Mesh  # datacenter dc1, the agent fixture's
    east: Mesh  # datacenter east, its own agent
    east_agent: FakeConsul
    backends: list[Process]


@pytest.fixture
def sites(tmp_path: Path, agent: FakeConsul) -> Iterator[Sites]:
    east_agent = FakeConsul(datacenter="east", node="fake-node-east")
    east_agent.start()
    agent.federate(east_agent)
    home = Mesh(tmp_path / "dc1", discovery=agent.discovery_table())
    east = Mesh(tmp_path / "east", discovery=east_agent.discovery_table(), ca_dir=home.ca_dir)
    found = Sites(home, east, east_agent, [])
    yield found
    home.stop()
    east.stop()
    east_agent.stop()
    for backend in found.backends:
        backend.stop()


def test_a_request_for_api_east_reaches_the_east_instance_over_mtls(
    agent: FakeConsul, sites: Sites
) -> None:
    name = f"api{secrets.token_hex(3)}"
    sites.backends += [start_backend(f"{name}-dc1-app"), start_backend(f"{name}-east-app")]
    sites.home.start_proxy(name, sites.backends[0].port, instance_id=f"{name}-dc1")
    east_api = sites.east.start_proxy(name, sites.backends[1].port, instance_id=f"{name}-east")
    front = sites.home.start_proxy(f"front{secrets.token_hex(3)}", 1)

    wait_until(lambda: get(front, f"{name}.east.mesh").status_code == 200, within=15,
               what="the east instance passing its check in east and being found from dc1")
    answer = get(front, f"{name}.east.mesh").json()
    assert answer["name"] == f"{name}-east-app"
    # the east proxy authenticated the caller by its certificate: the app sees its identity
    assert answer["client_id"] == f"spiffe://vmesh.local/svc/{front.service}"
    assert get(front, f"{name}.mesh").json()["name"] == f"{name}-dc1-app"  # this site's api
    with httpx.Client(proxy=f"http://{front.outbound}", timeout=15) as as_http_proxy:
        absolute = as_http_proxy.get(f"http://{name}.east.mesh/hello")
    assert absolute.json()["name"] == f"{name}-east-app"

    # watched through the local agent, in datacenter east
    assert any(p.startswith(f"/v1/health/service/{name}?") and "dc=east" in p
               for p in agent.requests)
    remote = upstream(front, f"{name}.east")
    assert remote["source"] == "consul" and remote["refused"] is None
    assert [(i["id"], i["addr"]) for i in remote["instances"]] == [
        (f"{name}-east", f"127.0.0.1:{east_api.ports['inbound']}")]
    wait_until(lambda: front.metric("response_total", dst_service=f"{name}.east",
                                    status_code="200",
                                    server_id=f"spiffe://vmesh.local/svc/{name}") == 3,
               what="metrics counting the three answers from east under dst_service api.east")

    # a split names the other site's service: traffic shifts between the sites
    policy = sites.home.root / "etc/vmesh/policy.d/sites.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(f"kind: HTTPRoute\nname: {name}-sites\nservice: {name}\nrules:\n"
                      f"  - backends:\n      - {{service: {name}, weight: 1}}\n"
                      f"      - {{service: {name}.east, weight: 1}}\n")
    seen: set[str] = set()

    def both_sites_answer() -> bool:
        seen.add(get(front, f"{name}.mesh").json()["name"])
        return seen == {f"{name}-dc1-app", f"{name}-east-app"}

    wait_until(both_sites_answer, within=15, what="the split sending requests to both sites")


@dataclass
class FailingOver:
    """`api` in dc1 and in east, its ServicePolicy in dc1 failing over to `api.east`, and the
    proxy of a dc1 app that asks for `api`."""

    name: str
    here: str  # the name of dc1's app of `api`
    there: str  # east's
    local: ProxyProcess  # dc1's proxy of `api`
    east_api: ProxyProcess
    front: ProxyProcess

    @classmethod
    def start(cls, sites: Sites, policy: str = "") -> "FailingOver":
        """Everything started; `policy`: more lines of the ServicePolicy."""
        name = f"api{secrets.token_hex(3)}"
        here, there = f"{name}-dc1-app", f"{name}-east-app"
        sites.backends += [start_backend(here), start_backend(there)]
        path = sites.home.root / "etc/vmesh/policy.d/failover.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"kind: ServicePolicy\nservice: {name}\nfailover: [{name}.east]\n"
                        f"{policy}")
        local = sites.home.start_proxy(name, sites.backends[-2].port, instance_id=f"{name}-dc1")
        east_api = sites.east.start_proxy(name, sites.backends[-1].port,
                                          instance_id=f"{name}-east")
        front = sites.home.start_proxy(f"front{secrets.token_hex(3)}", 1)
        found = cls(name, here, there, local, east_api, front)
        wait_until(lambda: found.answered_by() == here, within=15, what="dc1's instance found")
        return found

    def answered_by(self) -> str:
        """The app that answered a request for `api`, or the proxy's reason for none."""
        answer = get(self.front, f"{self.name}.mesh")
        if answer.status_code == 200:
            return answer.json()["name"]
        return answer.headers["vmesh-error"]

    def changes(self) -> list[tuple[str, str | None]]:
        """The failover changes the front proxy logged: (event, to or from)."""
        return [(line["event"], line.get("failover_to", line.get("failover_from")))
                for line in self.front.logs
                if line.get("event") in ("failover", "failover_ended")
                and line.get("dst_service") == self.name]

    def logged(self, *changes: tuple[str, str | None]) -> None:
        """Until the front proxy has logged `changes`, and no more."""
        wait_until(lambda: self.changes() == list(changes), what=f"log lines {changes}")

    def failover(self) -> dict | None:
        return upstream(self.front, self.name)["failover"]


def test_requests_fail_over_to_east_while_dc1_lists_no_instance_and_come_back(
    agent: FakeConsul, sites: Sites
) -> None:
    api = FailingOver.start(sites)
    name, here, there = api.name, api.here, api.there
    assert [api.answered_by() for _ in range(3)] == [here] * 3  # local first, east untouched
    assert api.failover() is None

    api.local.proc.send_signal(signal.SIGUSR1)  # leaves discovery (still serving)
    wait_until(lambda: api.answered_by() == there, within=15, what="failover to east")
    assert [api.answered_by() for _ in range(3)] == [there] * 3
    shown = api.failover()
    assert shown is not None
    assert (shown["to"], shown["reason"], shown["detail"]) == (
        f"{name}.east", "no_endpoints", f"discovery lists no instance of {name}")
    wait_until(lambda: api.front.metric("response_total", authority=f"{name}.mesh",
                                        dst_service=f"{name}.east", status_code="200") >= 4,
               what="metrics counting the requests for api under dst_service api.east")
    api.logged(("failover", f"{name}.east"))  # once, not once per request
    line = api.front.wait_for_log(lambda line: line.get("event") == "failover")
    assert line["msg"] == "failing over: the service has no available instance"

    api.east_api.proc.send_signal(signal.SIGUSR1)  # east has none left either
    wait_until(lambda: api.answered_by() == "no_endpoints", within=15, what="east gone too")
    refused = get(api.front, f"{name}.mesh")
    assert refused.status_code == 503
    assert (f"discovery lists no instance of {name}; failover found no available instance "
            f"either ({name}.east: no_endpoints)") in refused.text

    api.east_api.proc.send_signal(signal.SIGTTIN)  # east joins again, then dc1
    wait_until(lambda: api.answered_by() == there, within=15, what="east back")
    api.local.proc.send_signal(signal.SIGTTIN)
    wait_until(lambda: api.answered_by() == here, within=15, what="requests back in dc1")
    assert [api.answered_by() for _ in range(3)] == [here] * 3
    assert api.failover() is None
    api.logged(("failover", f"{name}.east"), ("failover", None),
               ("failover", f"{name}.east"), ("failover_ended", f"{name}.east"))


def test_requests_fail_over_while_dc1s_instance_is_ejected_and_return_after_its_probe(
    agent: FakeConsul, sites: Sites
) -> None:
    api = FailingOver.start(sites, "circuit_breaker: {consecutive_failures: 1, "
                                   "backoff: {min: 2s, max: 2s, jitter: 0}}\n")
    app = sites.backends[-2]
    app.stop()  # dc1's proxy of api answers 502: one failure ejects its only instance
    assert api.answered_by() == "app.connect_failed"
    assert api.answered_by() == api.there  # (a probe of dc1's instance may come 2 s later)
    shown = api.failover()
    assert shown is not None and (shown["to"], shown["reason"]) == (
        f"{api.name}.east", "all_endpoints_ejected")

    sites.backends.append(start_backend(api.here, port=app.port))  # the app is back
    # after the backoff, one request probes dc1's instance; once it succeeded, all go there
    wait_until(lambda: api.answered_by() == api.here, within=15, what="the probe")
    assert [api.answered_by() for _ in range(3)] == [api.here] * 3
    assert api.failover() is None
    api.logged(("failover", f"{api.name}.east"), ("failover_ended", f"{api.name}.east"))


def test_a_reload_that_drops_the_failover_ends_it_at_once(
    agent: FakeConsul, sites: Sites
) -> None:
    api = FailingOver.start(sites)
    api.local.proc.send_signal(signal.SIGUSR1)  # dc1 lists no instance: east takes the requests
    wait_until(lambda: api.answered_by() == api.there, within=15, what="failover to east")

    policy = sites.home.root / "etc/vmesh/policy.d/failover.yaml"
    policy.write_text(f"kind: ServicePolicy\nservice: {api.name}\n")  # `failover` gone
    api.front.proc.send_signal(signal.SIGHUP)
    ended = api.front.wait_for_log(lambda line: line.get("event") == "failover_ended")
    assert (ended["dst_service"], ended["failover_from"], ended["reason"]) == (
        api.name, f"{api.name}.east", "failover.removed_by_policy")
    # no instance of dc1's has come back, yet what the proxy shows follows the new policy
    assert api.failover() is None
    assert api.answered_by() == "no_endpoints"  # and so do the requests: none goes east
    assert api.failover() is None
    api.logged(("failover", f"{api.name}.east"), ("failover_ended", f"{api.name}.east"))


def test_a_datacenter_the_agent_does_not_know_is_refused_and_not_watched(
    agent: FakeConsul, sites: Sites
) -> None:
    front = sites.home.start_proxy(f"front{secrets.token_hex(3)}", 1)
    for _ in range(2):
        refused = get(front, "api.west.mesh")
        assert refused.status_code == 503
        assert refused.headers["vmesh-error"] == "discovery.unknown_datacenter"
        assert "knows no datacenter west (it knows dc1, east)" in refused.text
    assert get(front, "api.west").headers["vmesh-error"] == "http1.unknown_authority"

    # asked once whether west exists, never queried for instances there
    assert agent.requests.count("/v1/catalog/datacenters") == 1
    assert not any("dc=west" in p for p in agent.requests)
    assert upstream(front, "api.west")["refused"]["reason"] == "discovery.unknown_datacenter"
    front.wait_for_log(lambda line: line.get("msg") ==
                       "discovery refuses the service; its requests are refused"
                       and line.get("dst_service") == "api.west")
    assert [line for line in front.logs if line.get("dst_service") == "api.west"
            and line.get("event") == "discovery_consul_error"] == []


def test_a_proxy_on_mdns_refuses_other_sites_naming_the_consul_backend(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, discovery=MDNS)
    try:
        front = mesh.start_proxy(f"front{secrets.token_hex(3)}", 1)
        refused = get(front, "api.east.mesh")
        assert refused.status_code == 503
        assert refused.headers["vmesh-error"] == "discovery.sites_need_consul"
        assert "mDNS discovery sees one LAN only" in refused.text
        assert 'backend = "consul"' in refused.text
        assert upstream(front, "api.east")["refused"]["reason"] == "discovery.sites_need_consul"
    finally:
        mesh.stop()
