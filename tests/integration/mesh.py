"""A small mesh on loopback for tests: a CA, service files, real proxy processes.

Every proxy listens on ports the OS picks; the endpoints file that static
discovery reads is rewritten as proxies come up.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from identity import castate, pki
from tests.support import follow_json_logs

REPO = Path(__file__).resolve().parents[2]
TRUST_DOMAIN = "vmesh.local"


@dataclass
class ProxyProcess:
    """A running `vmesh proxy run`: its process, ports and the JSON log lines it printed."""

    service: str
    root: Path
    proc: subprocess.Popen[str]
    ports: dict[str, int] = field(default_factory=dict)
    logs: list[dict] = field(default_factory=list)

    @property
    def outbound(self) -> str:
        return f"127.0.0.1:{self.ports['outbound']}"

    def wait_for_log(self, predicate, within: float = 10.0) -> dict:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in list(self.logs):
                if predicate(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no matching log line from {self.service}: {self.logs[-5:]}")

    def admin(self) -> httpx.Client:
        """A client of the proxy's admin API over its unix socket."""
        socket_path = self.root / "run/vmesh" / f"{self.service}.sock"
        transport = httpx.HTTPTransport(uds=str(socket_path))
        return httpx.Client(transport=transport, base_url="http://admin", timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` that carry `labels`."""
        with self.admin() as client:
            text = client.get("/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def listener(self, name: str) -> dict:
        """What `/v1/stats` says of the listener `name`: open, max, saturated, saturations."""
        with self.admin() as admin:
            return admin.get("/v1/stats").json()["listeners"][name]

    def stop(self, sig: int = signal.SIGTERM, within: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


class Mesh:
    """A CA and any number of services with their proxies under one VMESH_ROOT."""

    def __init__(
        self, root: Path, discovery: str = 'backend = "static"', source: Path = REPO,
        trust_domain: str = TRUST_DOMAIN, ca_dir: Path | None = None,
    ) -> None:
        """`discovery`: the body of mesh.toml's `[discovery]` table (static: the endpoints file
        this mesh rewrites as proxies start); `source`: where the proxies' code is imported
        from (this tree, built, by default); `trust_domain`: the mesh's, and its CA's;
        `ca_dir`: another mesh's CA to issue from (another site of one trust domain), instead
        of a CA of its own."""
        self.root = root
        self.source = source
        self.trust_domain = trust_domain
        mesh_toml = root / "etc/vmesh/mesh.toml"
        mesh_toml.parent.mkdir(parents=True, exist_ok=True)
        mesh_toml.write_text(f'trust_domain = "{trust_domain}"\n[discovery]\n{discovery}\n')
        self.ca_dir = ca_dir or root / "var/lib/vmesh/identity"
        if ca_dir is None:
            castate.init(self.ca_dir, trust_domain)
        self.ca = castate.load(self.ca_dir)
        self.proxies: list[ProxyProcess] = []
        self.instances: list[dict] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "VMESH_ROOT": str(self.root)}

    def issue(
        self,
        service: str,
        directory: Path | None = None,
        lifetime: timedelta = timedelta(hours=24),
        kind: str = "svc",
        trust_domain: str | None = None,
        issuer: pki.CertifiedKey | None = None,
        now: datetime | None = None,
    ) -> Path:
        """Write key.pem, cert.pem and bundle.pem for `service` (default: its state dir), in
        `trust_domain` (default: the mesh's); `now` moves the leaf's validity (a past `now`
        makes an expired leaf)."""
        directory = directory or self.root / "var/lib/vmesh" / service
        trust_domain = trust_domain or self.trust_domain
        key = pki.generate_key()
        leaf = pki.issue_leaf(
            issuer or self.ca.active,
            key.public_key(),
            spiffe_id=f"spiffe://{trust_domain}/{kind}/{service}",
            common_name=service,
            trust_domain=trust_domain,
            lifetime=lifetime,
            now=now,
        )
        pki.write_private(directory / "key.pem", pki.key_pem(key))
        pki.write_file(directory / "cert.pem", pki.cert_pem(leaf, (issuer or self.ca.active).cert))
        pki.write_file(directory / "bundle.pem", pki.cert_pem(*self.ca.bundle))
        return directory

    def configure(self, service: str, app_port: int, extra: str = "",
                  instance_id: str | None = None, idle: str = "10s", drain: str = "10s",
                  ) -> Path:
        """Write the service file; the instance id defaults to `<service>-<n>`, n counting
        this mesh's proxies; `idle` is its idle timeout, `drain` its drain timeout."""
        path = self.root / "etc/vmesh/services" / f"{service}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        instance_id = instance_id or f"{service}-{len(self.proxies) + 1}"
        path.write_text(
            f'service = "{service}"\napp_port = {app_port}\n'
            f'instance_id = "{instance_id}"\ntrust_domain = "{self.trust_domain}"\n'
            f"{extra}\n"
            '[listen]\ninbound = "127.0.0.1:0"\noutbound = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\n'
            f'[timeouts]\nheader = "2s"\nidle = "{idle}"\ndrain = "{drain}"\n'
        )
        return path

    def start_proxy(
        self, service: str, app_port: int, extra: str = "", certificate: bool = True,
        instance_id: str | None = None, idle: str = "10s", drain: str = "10s",
        prefix: Sequence[str] = (),
    ) -> ProxyProcess:
        """Configure, certify and start the proxy of `service` (after `prefix`, e.g.
        `prlimit --nofile=256`); it is added to discovery."""
        instance_id = instance_id or f"{service}-{len(self.proxies) + 1}"
        self.configure(service, app_port, extra, instance_id, idle, drain)
        if certificate:
            self.issue(service)
        proxy = start_proxy_process(service, self.env, prefix, self.source)
        self.proxies.append(proxy)
        self.add_instance(service, proxy.ports["inbound"], instance_id)
        return proxy

    def add_instance(self, service: str, port: int, instance_id: str) -> None:
        self.instances.append(
            {"service": service, "id": instance_id, "address": "127.0.0.1", "port": port}
        )
        self.write_endpoints()

    def write_endpoints(self) -> None:
        lines = []
        for entry in self.instances:
            lines.append("[[instance]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
        pki.write_file(self.root / "etc/vmesh/endpoints.toml", "\n".join(lines).encode() + b"\n")

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()


def start_proxy_process(
    service: str, env: dict[str, str], prefix: Sequence[str] = (), source: Path = REPO
) -> ProxyProcess:
    """Start `vmesh proxy run <service>` (after `prefix`, e.g. `ip netns exec <ns>`) until ready,
    its packages imported from `source` (the working directory comes first on the path)."""
    return start_until_ready(["proxy", "run", service], service, "proxy ready", env, prefix,
                             source)


def start_gateway_process(env: dict[str, str], prefix: Sequence[str] = ()) -> ProxyProcess:
    """Start `vmesh gateway run` (its gateway.toml under `env`'s VMESH_ROOT) until ready; its
    admin socket is that of the service `vmesh-gateway`, its port `ports["port"]`."""
    return start_until_ready(["gateway", "run"], "vmesh-gateway", "gateway ready", env, prefix)


def start_until_ready(
    args: list[str], service: str, ready: str, env: dict[str, str],
    prefix: Sequence[str] = (), source: Path = REPO,
) -> ProxyProcess:
    """Start `vmesh <args>` until it logs `ready`, whose integer fields are its ports."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "vm_mesh", *args],
        cwd=source,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proxy = ProxyProcess(service, Path(env["VMESH_ROOT"]), proc)
    started = threading.Event()

    def on_record(record: dict) -> None:
        if record.get("msg") == ready:
            proxy.ports = {k: v for k, v in record.items() if isinstance(v, int) and k != "ts"}
            started.set()

    follow_json_logs(proc, proxy.logs, on_record)
    if not started.wait(20):
        proxy.stop()
        raise AssertionError(f"{service} did not start: {proxy.logs[-10:]}")
    return proxy



def get_via(front: ProxyProcess, host: str) -> httpx.Response:
    """`GET /hello` for `host` through `front`'s outbound port."""
    return httpx.get(f"http://{front.outbound}/hello", headers={"Host": host}, timeout=15)


def upstream_of(front: ProxyProcess, service: str) -> dict:
    """What `front`'s `/v1/endpoints` says of the upstream `service`."""
    with front.admin() as admin:
        upstreams = admin.get("/v1/endpoints").json()["upstreams"]
    return next(u for u in upstreams if u["service"] == service)


def wait_until(predicate, within: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        time.sleep(0.05)


def wait_full(process: ProxyProcess, listener: str, cap: int) -> None:
    """Wait until `listener` of `process` holds `cap` connections, then check that its metrics,
    `/v1/stats` and its log show it full for the first time."""
    wait_until(lambda: process.metric("tcp_open_connections", listener=listener) == cap,
               what=f"{cap} connections open on the {listener} listener")
    assert process.metric("tcp_listener_saturated", listener=listener) == 1
    assert process.metric("tcp_max_connections", listener=listener) == cap
    assert process.metric("tcp_listener_saturations_total", listener=listener) == 1
    assert process.listener(listener) == {"open": cap, "max": cap, "saturated": True,
                                          "saturations": 1}
    line = process.wait_for_log(lambda line: line.get("reason") == "listener.saturated")
    assert (line["listener"], line["max_connections"]) == (listener, cap)
