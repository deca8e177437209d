"""Four hosts as network namespaces on one bridge: the identity service on h1, two instances of
`api` on h2 and h3, a `web` proxy on h4. Every host joins with `vmesh join` and a one-time token,
the proxies find each other over real multicast mDNS, and every hop is mTLS with our CA's certs.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.netns import Host, bridged_hosts
from tests.support import require_tool

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
WEB_ID = "spiffe://vmesh.local/svc/web"
RETRY_CONNECT_FAILURES = """\
kind: HTTPRoute
name: api-retries
service: api
rules:
  - matches:
      - path: {prefix: /}
    retry: {on: [connect-failure], attempts: 2}
"""


@dataclass
class Proc:
    """A process started in a namespace, its JSON log lines collected as they come."""

    name: str
    host: Host
    popen: subprocess.Popen[str]
    records: list[dict] = field(default_factory=list)

    def read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                self.records.append({"msg": line.rstrip()})

    def logged(self, msg: str) -> dict | None:
        return next((r for r in list(self.records) if r.get("msg") == msg), None)


class Cluster:
    def __init__(self, hosts: list[Host], root: Path) -> None:
        self.hosts = hosts
        self.root = root
        self.procs: list[Proc] = []

    def env(self, name: str) -> dict[str, str]:
        return {**os.environ, "VMESH_ROOT": str(self.root / name), "PYTHONPATH": str(REPO)}

    def start(self, host: Host, name: str, *argv: str, root: str | None = None) -> Proc:
        popen = subprocess.Popen(host.command(*argv), cwd=REPO, env=self.env(root or host.netns),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        proc = Proc(name, host, popen)
        threading.Thread(target=proc.read, daemon=True).start()
        self.procs.append(proc)
        return proc

    def vmesh(self, host: Host | None, *args: str, root: str | None = None) -> str:
        argv = [sys.executable, "-m", "vm_mesh", *args]
        done = subprocess.run(host.command(*argv) if host else argv, cwd=REPO,
                              env=self.env(root or (host.netns if host else "ca")),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"vmesh {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)


def wait_for(condition, what: str, within: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        time.sleep(0.1)
    return result


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    require_tool("ip")
    require_tool("curl")
    root = tmp_path_factory.mktemp("mesh")
    with bridged_hosts(4) as hosts:
        cluster = Cluster(hosts, root)
        try:
            ca, *apis, client = hosts
            cluster.vmesh(None, "identity", "init")
            identity = cluster.start(ca, "identity", sys.executable, "-m", "vm_mesh", "identity",
                                     "serve", "--listen", f"{ca.address}:8443",
                                     "--san", ca.address, root="ca")
            wait_for(lambda: identity.logged("identity service listening"), "identity up")
            url = f"https://{ca.address}:8443"
            for host in apis:
                www = root / host.netns / "www"
                www.mkdir(parents=True)
                (www / "who").write_text(host.netns)
                cluster.start(host, "app", sys.executable, "-m", "http.server", "8080",
                              "--bind", "127.0.0.1", "--directory", str(www))
                join(cluster, host, url, "api", 8080)
            # a connection refused never reached an app: retrying it elsewhere is always safe
            policy = root / client.netns / "etc/vmesh/policy.d/api.yaml"
            policy.parent.mkdir(parents=True)
            policy.write_text(RETRY_CONNECT_FAILURES)
            join(cluster, client, url, "web", 9)
            yield cluster
        finally:
            cluster.stop()


def join(cluster: Cluster, host: Host, url: str, service: str, app_port: int) -> Proc:
    token = cluster.vmesh(None, "identity", "token", "create", "--host", host.netns,
                          "--services", service, "--ttl", "10m", root="ca")
    cluster.vmesh(host, "join", "--token", token, "--identity", url, "--service", service,
                  "--app-port", str(app_port), "--host", host.netns,
                  "--instance-id", f"{service}-{host.netns}", "--advertise", host.address,
                  "--inbound", f"{host.address}:4143", "--no-start")
    proxy = cluster.start(host, f"{service}-proxy", sys.executable, "-m", "vm_mesh", "proxy",
                          "run", service)
    wait_for(lambda: proxy.logged("proxy ready"), f"proxy of {service} on {host.netns}")
    return proxy


def get(cluster: Cluster, path: str = "/who") -> tuple[int, str]:
    client = cluster.hosts[-1]
    done = subprocess.run(client.command("curl", "-sS", "-o", "-", "-w", "\n%{http_code}",
                                         "-H", "Host: api", f"http://127.0.0.1:4140{path}"),
                          capture_output=True, text=True, timeout=30)
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body


def admin(cluster: Cluster, host: Host, service: str, path: str) -> str:
    sock = cluster.root / host.netns / "run/vmesh" / f"{service}.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                      base_url="http://admin", timeout=5) as client:
        return client.get(path).text


def test_requests_cross_hosts_over_mtls_to_every_instance(cluster: Cluster) -> None:
    api_hosts = {h.netns for h in cluster.hosts[1:3]}
    seen: set[str] = set()
    last: list[tuple[int, str]] = []

    def both_seen() -> bool:
        code, body = get(cluster)
        last[:] = [(code, body)]
        if code == 200:
            seen.add(body)
        return seen == api_hosts

    try:
        wait_for(both_seen, "both api hosts answering through the mesh", within=60)
    except AssertionError:
        web = next(p for p in cluster.procs if p.name == "web-proxy")
        message = f"seen {seen}, last answer {last}, web proxy: {web.records[-8:]}"
        raise AssertionError(message) from None
    for host in cluster.hosts[1:3]:
        metrics = admin(cluster, host, "api", "/metrics")
        inbound = [line for line in metrics.splitlines()
                   if line.startswith("request_total") and 'direction="inbound"' in line]
        assert any('tls="true"' in line and WEB_ID in line for line in inbound), inbound
    endpoints = admin(cluster, cluster.hosts[-1], "web", "/v1/endpoints")
    assert all(h.address in endpoints for h in cluster.hosts[1:3]), endpoints


def test_killed_instance_stops_failing_requests_after_detection(cluster: Cluster) -> None:
    victim = cluster.hosts[2]
    for proc in cluster.procs:
        if proc.host == victim and proc.popen.poll() is None:
            proc.popen.kill()  # no drain, no goodbye: the host just dies
            proc.popen.wait(timeout=10)
    streak = 0
    deadline = time.monotonic() + 90
    while streak < 20:  # the failure detection window: until 20 requests in a row succeed
        assert time.monotonic() < deadline, "traffic never settled on the surviving instance"
        code, _ = get(cluster)
        streak = streak + 1 if code == 200 else 0
    results = [get(cluster) for _ in range(50)]
    assert results == [(200, cluster.hosts[1].netns)] * 50
