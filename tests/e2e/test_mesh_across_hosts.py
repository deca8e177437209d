"""A mesh over several hosts (network namespaces on a bridge): certificates from an identity
service on another host, discovery over real multicast mDNS, mTLS between hosts, and what
happens when an instance dies or a host drops off the network."""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.apps import first_answer, get, start_service_proxy
from tests.e2e.lan import Host, hosts
from tests.integration.mesh import ProxyProcess, wait_until
from tests.integration.processes import start_backend
from tests.support import require_tool

pytestmark = pytest.mark.e2e

OBTAIN = """\
import asyncio, sys
from pathlib import Path
from identity.client import obtain
from vm_mesh import paths
url, token, host, service = sys.argv[1:]
asyncio.run(obtain(url, token, host=host, service=service, directory=paths.state_dir(service)))
"""


@dataclass
class World:
    """Hosts on one bridge, an identity service on the first; proxies join it as they start."""

    hosts: list[Host]
    identity_url: str

    def token(self, host: Host, service: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "vm_mesh", "identity", "token", "create",
             "--host", host.namespace, "--services", service],
            env=self.hosts[0].env, capture_output=True, text=True, timeout=30, check=True,
        )
        return result.stdout.strip()

    def join(self, host: Host, service: str) -> None:
        """Obtain the service's first leaf from the identity service, from inside `host`."""
        token = self.token(host, service)
        result = host.run([sys.executable, "-c", OBTAIN, self.identity_url, token,
                           host.namespace, service])
        assert result.returncode == 0, result.stderr[-2000:]

    def start(
        self, host: Host, service: str, app_port: int, discovery: str | None = None
    ) -> ProxyProcess:
        """Join, configure and start `service`'s proxy on `host`; `discovery` is the body of
        the host's mesh.toml [discovery] table (default: mDNS on the host's link)."""
        self.join(host, service)
        discovery = discovery or f'backend = "mdns"\ninterfaces = ["{host.address}"]\n'
        (host.root / "etc/vmesh").mkdir(parents=True, exist_ok=True)
        (host.root / "etc/vmesh/mesh.toml").write_text(f"[discovery]\n{discovery}")
        proxy = start_service_proxy(host, service, app_port, f"{service}-{host.namespace}")
        return proxy

    def backend(self, host: Host, name: str) -> int:
        """A JSON-answering app on `host`'s loopback; its answers carry `name`."""
        process = start_backend(name, prefix=host.command([]))
        host.adopt(process.proc)
        return process.port


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    require_tool("curl")
    with hosts(4, tmp_path) as made:
        identity = made[0]
        init = identity.run([sys.executable, "-m", "vm_mesh", "identity", "init"])
        assert init.returncode == 0, init.stderr
        proc = identity.popen([sys.executable, "-m", "vm_mesh", "identity", "serve",
                               "--listen", f"{identity.address}:0"])
        yield World(made, _listening_url(proc))


def _listening_url(proc: subprocess.Popen[str], message: str = "identity service listening",
                   scheme: str = "https") -> str:
    """The URL a service reports once it listens (read off its JSON log line `message`)."""
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if f'"{message}"' in line:
                found.append(f"{scheme}://{json.loads(line)['listen']}")
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(20), f"no {message!r} line"
    return found[0]


def endpoint_ids(proxy: ProxyProcess, service: str) -> set[str]:
    with proxy.admin() as admin:
        upstreams = admin.get("/v1/endpoints").json()["upstreams"]
    return {i["id"] for u in upstreams if u["service"] == service for i in u["instances"]}


def test_request_crosses_hosts_over_mtls_with_certificates_from_another_host(
    world: World,
) -> None:
    _, front_host, api_host, _ = world.hosts
    api = f"api-{secrets.token_hex(3)}"
    world.start(api_host, api, world.backend(api_host, f"{api}@{api_host.namespace}"))
    front = world.start(front_host, "front", 1)

    answer = first_answer(front_host, front, api)

    assert answer["name"] == f"{api}@{api_host.namespace}"
    assert answer["client_id"] == "spiffe://vmesh.local/svc/front"
    with front.admin() as admin:
        [upstream] = [u for u in admin.get("/v1/endpoints").json()["upstreams"]
                      if u["service"] == api]
    assert upstream["source"] == "mdns"
    [instance] = upstream["instances"]
    assert instance["addr"].startswith(f"{api_host.address}:")


def two_instances(world: World) -> tuple[Host, ProxyProcess, str, list[ProxyProcess]]:
    """`front` on host 2 and one instance of a fresh api service on each of hosts 3 and 4,
    both of which front has already answered from."""
    _, front_host, *api_hosts = world.hosts
    api = f"api-{secrets.token_hex(3)}"
    proxies = [world.start(host, api, world.backend(host, host.namespace)) for host in api_hosts]
    front = world.start(front_host, "front", 1)
    first_answer(front_host, front, api)
    wait_until(lambda: len(endpoint_ids(front, api)) == 2, within=10,
               what="front knowing both api instances")
    return front_host, front, api, proxies


def after_failure(
    host: Host, front: ProxyProcess, api: str, gone: Host
) -> tuple[list[int], list[tuple[int, dict]]]:
    """What the app on `host` sees once `gone`'s instance failed: the statuses until ten answers
    in a row (the failure-detection window), then the answers of 50 requests. A connect that
    fails (refused, or timed out) is tried on the other instance, so only a request already
    sent on a connection to the lost instance can fail."""
    streak: list[int] = []
    wait_until(lambda: streak.append(get(host, front, api)[0]) or streak[-10:] == [200] * 10,
               within=30, what="ten answers in a row after the failure")
    print(f"after {gone.namespace} failed: {streak}")
    return streak, [get(host, front, api) for _ in range(50)]


def test_killed_instance_loses_its_traffic_to_the_other_host(world: World) -> None:
    front_host, front, api, proxies = two_instances(world)
    # kill the instance the balancer prefers (lowest latency estimate): it is picked next
    with front.admin() as admin:
        upstreams = admin.get("/v1/endpoints").json()["upstreams"]
    [instances] = [u["instances"] for u in upstreams if u["service"] == api]
    preferred = min(instances, key=lambda i: i["ewma_ms"])["id"]
    [doomed_host] = [host for host in world.hosts if f"{api}-{host.namespace}" == preferred]
    [survivor_host] = [host for host in world.hosts[2:] if host is not doomed_host]
    doomed = proxies[world.hosts.index(doomed_host) - 2]

    doomed.proc.kill()  # SIGKILL: no drain, no mDNS goodbye
    doomed.proc.wait(timeout=10)
    detection, answers = after_failure(front_host, front, api, doomed_host)

    # the dead host's kernel refuses connects at once and closes pooled connections (FIN), so
    # each request that picks the dead instance is sent to the other one: no request fails
    assert detection == [200] * 10, detection
    assert [status for status, _ in answers] == [200] * 50
    assert {answer["name"] for _, answer in answers} == {survivor_host.namespace}
    # and the log names the instance that was skipped. The balancer learns of the dead
    # instance only by picking it: should its estimate not have been the lowest after all,
    # requests go on (each answered) until it decays below the survivor's and is picked
    later: list[int] = []

    def skip_logged() -> bool:
        later.append(get(front_host, front, api)[0])
        return any(line.get("msg") == "instance refused the connection; trying another"
                   for line in list(front.logs))

    wait_until(skip_logged, within=30, what="front picking the killed instance")
    assert set(later) == {200}, later
    skipped = front.wait_for_log(
        lambda r: r.get("msg") == "instance refused the connection; trying another"
    )
    assert skipped["instance"] == f"{api}-{doomed_host.namespace}"


def test_host_cut_off_the_network_leaves_the_endpoint_set(world: World) -> None:
    front_host, front, api, _ = two_instances(world)
    survivor_host, cut_host = world.hosts[2], world.hosts[3]
    cut_id = f"{api}-{cut_host.namespace}"

    cut_host.cut()
    started = time.monotonic()
    # Connects to the cut host time out (500 ms here) and go to the other instance. A request
    # sent on a pooled connection to it gets no answer until the route timeout (15 s by default):
    # curl gives up first (status 0). Its pending count steers the balancer away meanwhile.
    _, answers = after_failure(front_host, front, api, cut_host)
    answered = [answer for status, answer in answers if status == 200]
    assert len(answered) >= 45, answers
    assert {answer["name"] for answer in answered} == {survivor_host.namespace}

    # no goodbye crossed the cut link; front's queries for the cut host's SRV record go
    # unanswered, the record expires (10 s TTL) and the instance leaves front's endpoint set
    wait_until(lambda: cut_id not in endpoint_ids(front, api), within=45,
               what="the cut-off instance leaving the endpoint set")
    print(f"{cut_id} left the endpoint set {time.monotonic() - started:.1f} s after the cut")
    assert endpoint_ids(front, api) == {f"{api}-{survivor_host.namespace}"}
    answers = [get(front_host, front, api) for _ in range(20)]
    assert all(status == 200 and answer["name"] == survivor_host.namespace
               for status, answer in answers), answers


def test_consul_agent_gone_keeps_routing_on_the_last_known_good_set(world: World) -> None:
    """Hosts find each other through a Consul agent (the fake one, on the first host); when it
    goes away, routing goes on over the saved set, reported stale with its age, also across a
    restart of the calling proxy."""
    agent_host, front_host, api_host, _ = world.hosts
    agent = agent_host.popen([sys.executable, "-m", "tests.fake_consul",
                              "--listen", agent_host.address])
    url = _listening_url(agent, "fake consul listening", "http")
    discovery = (f'backend = "consul"\nconsul_url = "{url}"\n'
                 'consul_wait = "1s"\nconsul_check_interval = "200ms"\n')
    api = f"api-{secrets.token_hex(3)}"
    world.start(api_host, api, world.backend(api_host, api_host.namespace), discovery)
    front = world.start(front_host, "front", 1, discovery)
    assert first_answer(front_host, front, api, within=20)["name"] == api_host.namespace

    def upstream(proxy: ProxyProcess) -> dict:
        with proxy.admin() as admin:
            upstreams = admin.get("/v1/endpoints").json()["upstreams"]
        return next(u for u in upstreams if u["service"] == api)

    assert upstream(front)["source"] == "consul" and upstream(front)["stale"] is False

    os.kill(agent.pid, signal.SIGTERM)
    agent.wait(timeout=10)
    wait_until(lambda: upstream(front)["stale"] is True, within=15,
               what="front noticing the agent is gone")
    stale = upstream(front)
    assert stale["source"] == "last-known-good" and stale["age_s"] >= 0
    status, answer = get(front_host, front, api)  # still routed, on the saved set
    assert (status, answer["name"]) == (200, api_host.namespace)

    assert front.stop() == 0  # a restart while the agent is still gone starts on the saved set
    front = world.start(front_host, "front", 1, discovery)
    status, answer = get(front_host, front, api)
    assert (status, answer["name"]) == (200, api_host.namespace)
    restarted = upstream(front)
    assert restarted["source"] == "last-known-good" and restarted["stale"] is True
    assert restarted["age_s"] >= stale["age_s"]
