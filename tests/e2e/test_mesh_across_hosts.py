"""A mesh over several hosts (network namespaces on a bridge): certificates from an identity
service on another host, discovery over real multicast mDNS, mTLS between hosts, and what
happens when an instance dies or a host drops off the network."""

import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.lan import Host, hosts
from tests.integration.mesh import ProxyProcess, start_proxy_process, wait_until
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

    def start(self, host: Host, service: str, app_port: int) -> ProxyProcess:
        """Join, configure and start `service`'s proxy on `host`, announced over mDNS there."""
        self.join(host, service)
        config = host.root / "etc/vmesh/services" / f"{service}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'service = "{service}"\napp_port = {app_port}\n'
            f'instance_id = "{service}-{host.namespace}"\n'
            f'[listen]\ninbound = "{host.address}:0"\noutbound = "127.0.0.1:0"\n'
            f'admin = "127.0.0.1:0"\nadvertise = "{host.address}"\n'
            '[timeouts]\nconnect = "500ms"\nheader = "2s"\nidle = "10s"\ndrain = "2s"\n'
        )
        (host.root / "etc/vmesh/mesh.toml").write_text(
            f'[discovery]\nbackend = "mdns"\ninterfaces = ["{host.address}"]\n'
        )
        proxy = start_proxy_process(service, host.env, prefix=host.command([]))
        host.adopt(proxy.proc)
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


def _listening_url(proc: subprocess.Popen[str]) -> str:
    """The URL the identity service reports once it listens (read off its JSON log)."""
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if '"identity service listening"' in line:
                found.append(f"https://{json.loads(line)['listen']}")
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(20), "identity service did not start"
    return found[0]


def get(host: Host, proxy: ProxyProcess, service: str) -> tuple[int, dict]:
    """curl from `host`'s app side through its outbound listener: (status, JSON body). Status 0
    means curl gave up after 5 s."""
    result = host.run(["curl", "-sS", "-m", "5", "-w", "\n%{http_code}", "-H",
                       f"Host: {service}.mesh", f"http://127.0.0.1:{proxy.ports['outbound']}/hi"])
    body, _, status = result.stdout.rpartition("\n")
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        payload = {"raw": body, "stderr": result.stderr}
    return int(status or 0), payload


def first_answer(host: Host, proxy: ProxyProcess, service: str, within: float = 10) -> dict:
    """The first 200 answer: a proxy watches a service from its first request on, so the first
    requests may find no instance yet."""
    answers: list[tuple[int, dict]] = []
    wait_until(lambda: answers.append(get(host, proxy, service)) or answers[-1][0] == 200,
               within=within, what=f"{proxy.service} reaching {service}")
    return answers[-1][1]


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


def breaker(proxy: ProxyProcess, service: str, instance_id: str) -> dict:
    with proxy.admin() as admin:
        upstreams = admin.get("/v1/endpoints").json()["upstreams"]
    [instance] = [i for u in upstreams if u["service"] == service
                  for i in u["instances"] if i["id"] == instance_id]
    return instance["breaker"]


def after_failure(
    host: Host, front: ProxyProcess, api: str, gone: Host
) -> tuple[list[int], list[dict]]:
    """What the app on `host` sees once `gone`'s instance failed: the statuses until ten answers
    in a row (the failure-detection window), then the answers of 50 requests, none of which may
    fail: a breaker probe of the dead instance that cannot connect is tried on another one."""
    streak: list[int] = []
    wait_until(lambda: streak.append(get(host, front, api)[0]) or streak[-10:] == [200] * 10,
               within=30, what="ten answers in a row after the failure")
    print(f"after {gone.namespace} failed: {streak}")
    answers = [get(host, front, api) for _ in range(50)]
    assert [status for status, _ in answers if status != 200] == [], answers
    return streak, [answer for _, answer in answers]


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
    detection, answered = after_failure(front_host, front, api, doomed_host)

    # nothing reached the dead instance, so each refused connect went to the survivor: its
    # callers saw no failed request at all, and the log names the instance that was skipped
    assert set(detection) == {200}, detection
    skipped = front.wait_for_log(
        lambda r: r.get("msg") == "instance refused the connection; trying another"
    )
    assert skipped["instance"] == f"{api}-{doomed_host.namespace}"
    assert {answer["name"] for answer in answered} == {survivor_host.namespace}


def test_host_cut_off_the_network_leaves_by_the_breaker_not_mdns(world: World) -> None:
    front_host, front, api, _ = two_instances(world)
    survivor_host, cut_host = world.hosts[2], world.hosts[3]

    cut_host.cut()
    # Connects to the cut host time out (500 ms here). A request sent on a pooled connection to
    # it gets no answer and, with no route timeout in policy, nothing bounds the wait: curl gives
    # up (status 0). Its pending count makes the balancer pick the other instance meanwhile.
    _, answered = after_failure(front_host, front, api, cut_host)

    assert len(answered) >= 45
    assert {answer["name"] for answer in answered} == {survivor_host.namespace}
    # no goodbye crossed the cut link, and zeroconf keeps a record for its TTL (SRV 120 s,
    # PTR 75 min): the instance stays in the endpoint set; the balancer and breaker avoid it
    assert f"{api}-{cut_host.namespace}" in endpoint_ids(front, api)
