"""Real proxies with `backend = "consul"` find each other through a Consul agent.

The agent is tests/fake_consul.py (no Consul binary is packaged for Debian): it
keeps Consul's documented HTTP API and really runs the HTTPS checks of `/ready`
the proxies register. When the agent goes away, the proxy keeps routing on its last known
good set and says so in `/v1/endpoints`.
"""

import json
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.integration.processes import Process, start_backend
from tests.support import require_tool


@pytest.fixture
def mesh(tmp_path: Path, agent: FakeConsul) -> Iterator[tuple[Mesh, list[Process]]]:
    mesh = Mesh(tmp_path, discovery=agent.discovery_table())
    backends: list[Process] = []
    yield mesh, backends
    mesh.stop()
    for backend in backends:
        backend.stop()


def get(front: ProxyProcess, service: str) -> httpx.Response:
    return httpx.get(f"http://{front.outbound}/hello", headers={"Host": f"{service}.mesh"},
                     timeout=15)


def upstream(front: ProxyProcess, service: str) -> dict:
    with front.admin() as admin:
        upstreams = admin.get("/v1/endpoints").json()["upstreams"]
    return next(u for u in upstreams if u["service"] == service)


def test_request_crosses_and_a_stopped_instance_leaves_the_set(
    agent: FakeConsul, mesh: tuple[Mesh, list[Process]]
) -> None:
    mesh, backends = mesh
    name = f"api{secrets.token_hex(3)}"
    backends.append(start_backend(name))
    api = mesh.start_proxy(name, backends[0].port)
    front = mesh.start_proxy(f"front{secrets.token_hex(3)}", 1)

    wait_until(lambda: get(front, name).status_code == 200, within=15,
               what="the api instance passing its check and being found")
    assert json.loads(get(front, name).text)["name"] == name
    found = upstream(front, name)
    assert found["source"] == "consul" and found["stale"] is False
    assert [i["addr"] for i in found["instances"]] == [f"127.0.0.1:{api.ports['inbound']}"]
    (entry,) = [s for s in agent.services.values() if s.name == name]
    assert entry.checks[0].http == f"https://127.0.0.1:{api.ports['admin']}/ready"

    assert api.stop() == 0  # drains: deregisters from the agent first
    assert all(s.name != name for s in agent.services.values())
    wait_until(lambda: get(front, name).status_code == 503, within=10,
               what="the stopped instance leaving the endpoint set")
    assert upstream(front, name)["instances"] == []


def test_agent_gone_keeps_routing_on_the_last_known_good_set(
    agent: FakeConsul, mesh: tuple[Mesh, list[Process]]
) -> None:
    mesh, backends = mesh
    name = f"api{secrets.token_hex(3)}"
    backends.append(start_backend(name))
    mesh.start_proxy(name, backends[0].port)
    front_name = f"front{secrets.token_hex(3)}"
    front = mesh.start_proxy(front_name, 1)
    wait_until(lambda: get(front, name).status_code == 200, within=15,
               what="the api instance being found")

    agent.stop()
    wait_until(lambda: upstream(front, name)["stale"] is True, within=15,
               what="the proxy noticing the agent is gone")
    stale = upstream(front, name)
    assert stale["source"] == "last-known-good" and stale["age_s"] >= 0
    assert len(stale["instances"]) == 1
    answer = get(front, name)  # still routed, on the saved set
    assert answer.status_code == 200 and json.loads(answer.text)["name"] == name
    front.wait_for_log(lambda line: line.get("event") == "discovery_consul_error")
    assert front.proc.poll() is None  # no crash: it backs off and retries

    # a proxy restarted while the agent is still down starts on the saved set
    assert front.stop() == 0
    restarted = mesh.start_proxy(front_name, 1)
    answer = get(restarted, name)
    assert answer.status_code == 200 and json.loads(answer.text)["name"] == name
    saved = upstream(restarted, name)
    assert saved["source"] == "last-known-good" and saved["stale"] is True
    restarted.wait_for_log(lambda line: line.get("msg") == "endpoints updated"
                           and line.get("source") == "last-known-good" and line.get("stale"))
    restarted.wait_for_log(lambda line: line.get("msg") ==
                           "consul agent unreachable; registering in the background")


def curl(url: str, *options: str) -> tuple[int, str]:
    result = subprocess.run([require_tool("curl"), "-sS", "-k", "-m", "5", "-w", "\n%{http_code}",
                             *options, url], capture_output=True, text=True, timeout=15)
    body, _, status = result.stdout.rpartition("\n")
    return int(status or 0), body


def test_agent_checks_ready_over_https_without_a_client_certificate(
    agent: FakeConsul, mesh: tuple[Mesh, list[Process]]
) -> None:
    mesh, backends = mesh
    name = f"api{secrets.token_hex(3)}"
    backends.append(start_backend(name))
    api = mesh.start_proxy(name, backends[0].port)
    front = mesh.start_proxy(f"front{secrets.token_hex(3)}", 1)
    admin = f"https://127.0.0.1:{api.ports['admin']}"

    # the definition the agent got, as Consul documents it: HTTPS GET of /ready, no name check
    (entry,) = [s for s in agent.services.values() if s.name == name]
    (check,) = entry.definition["checks"]
    assert check == {
        "Name": "vmesh proxy ready", "HTTP": f"{admin}/ready", "Method": "GET",
        "TLSSkipVerify": True, "Interval": "100ms", "Timeout": "2s",
        "DeregisterCriticalServiceAfter": "1m",
    }
    wait_until(lambda: entry.checks[0].status == "passing", within=10,
               what="the agent's check of /ready passing")

    # without a client certificate: health only, everything else refused with a reason
    status, body = curl(f"{admin}/ready")
    assert status == 200 and json.loads(body) == {"ready": True, "reason": "ok"}
    assert curl(f"{admin}/live")[0] == 200
    status, body = curl(f"{admin}/metrics")
    assert status == 403 and json.loads(body)["error"] == "admin.client_certificate_required"
    # a mesh identity gets metrics, as before
    state = mesh.root / "var/lib/vmesh" / front.service
    status, body = curl(f"{admin}/metrics", "--cert", str(state / "cert.pem"),
                        "--key", str(state / "key.pem"))
    assert status == 200 and "request_total" in body

    # SIGKILL: no drain, no deregistration; the failing check takes it out of the passing set
    wait_until(lambda: get(front, name).status_code == 200, within=15, what="api being found")
    api.stop(signal.SIGKILL)
    wait_until(lambda: entry.checks[0].status == "critical", within=10,
               what="the agent's check failing")
    wait_until(lambda: upstream(front, name)["instances"] == [], within=10,
               what="the killed instance leaving the endpoint set")


def test_a_new_upstream_is_found_while_many_others_are_watched(
    agent: FakeConsul, tmp_path: Path
) -> None:
    """Each watched service holds a blocking query open (up to `consul_wait`, 30 s here as by
    default); a proxy that calls many services must still get a new one's instances at once."""
    table = agent.discovery_table().replace('consul_wait = "1s"', 'consul_wait = "30s"')
    mesh = Mesh(tmp_path, discovery=table)
    try:
        front = mesh.start_proxy(f"front{secrets.token_hex(3)}", 1)
        names = [f"svc{number}x{secrets.token_hex(2)}" for number in range(10)]
        for name in names:  # an instance that refuses connections: found, but answering 502
            agent.register({"ID": f"{name}-1", "Name": name, "Address": "127.0.0.1",
                            "Port": 1})
        errors = [get(front, name).headers.get("vmesh-error") for name in names]
        assert "no_endpoints" not in errors, errors
        assert all(upstream(front, name)["instances"] for name in names)
    finally:
        mesh.stop()


def test_two_meshes_on_one_agent_route_only_to_their_own_instances(
    agent: FakeConsul, tmp_path: Path
) -> None:
    """Two meshes (sites) share one Consul under the same service name: each proxy's set holds
    its own mesh's instances, and an entry with no trust domain (an older vmesh) is kept."""
    name = f"api{secrets.token_hex(3)}"
    ours = Mesh(tmp_path / "ours", discovery=agent.discovery_table())
    theirs = Mesh(tmp_path / "theirs", discovery=agent.discovery_table(),
                  trust_domain="elsewhere.test")
    backends = [start_backend(name), start_backend(name)]
    try:
        theirs.start_proxy(name, backends[1].port, instance_id=f"{name}-theirs")
        our_api = ours.start_proxy(name, backends[0].port, instance_id=f"{name}-ours")
        # our api as an older vmesh registers it: no trust domain in its meta
        agent.register({"ID": f"{name}-older", "Name": name, "Address": "127.0.0.1",
                        "Port": our_api.ports["inbound"]})
        wait_until(lambda: all(c.status == "passing" for s in agent.services.values()
                               if s.name == name for c in s.checks), within=15,
                   what="every instance of both meshes passing its check")
        front = ours.start_proxy(f"front{secrets.token_hex(3)}", 1)

        assert get(front, name).status_code == 200
        assert {i["id"] for i in upstream(front, name)["instances"]} == {
            f"{name}-ours", f"{name}-older"}
        assert {get(front, name).status_code for _ in range(20)} == {200}
        front.wait_for_log(lambda line: line.get("event") == "discovery_consul_foreign"
                           and line.get("trust_domain") == "elsewhere.test")
        front.wait_for_log(lambda line: line.get("event") == "discovery_consul_unscoped"
                           and line.get("instance") == f"{name}-older")
        (theirs_entry,) = [s for s in agent.services.values() if s.service_id == f"{name}-theirs"]
        assert theirs_entry.meta["td"] == "elsewhere.test"
    finally:
        ours.stop()
        theirs.stop()
        for backend in backends:
            backend.stop()
