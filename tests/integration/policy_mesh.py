"""A loopback mesh with test-controlled backends and policy files, for policy tests."""

import contextlib
import json
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from identity import pki
from tests.integration.mesh import Mesh, ProxyProcess
from tests.integration.processes import Process, start_backend


@dataclass
class PolicyMesh:
    mesh: Mesh
    backends: list[Process] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.mesh.root

    def write_policy(self, name: str, text: str) -> Path:
        """Write a policy file atomically (as Ansible would)."""
        path = self.root / "etc/vmesh/policy.d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pki.write_file(path, textwrap.dedent(text).encode())
        return path

    def service(self, name: str, **backend_options: object) -> tuple[Process, ProxyProcess]:
        """A backend app and its proxy, registered in discovery under `name`."""
        backend = start_backend(name, **backend_options)
        self.backends.append(backend)
        return backend, self.mesh.start_proxy(name, backend.port)

    def client(self, proxy: ProxyProcess) -> httpx.Client:
        return httpx.Client(base_url=f"http://{proxy.outbound}", timeout=30)

    def admin(self, service: str, path: str) -> dict:
        """GET an admin API path of `service`'s proxy over its unix socket."""
        socket = self.root / "run/vmesh" / f"{service}.sock"
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://admin", timeout=10) as client:
            return client.get(path).json()

    def metrics(self, service: str) -> str:
        socket = self.root / "run/vmesh" / f"{service}.sock"
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://admin", timeout=10) as client:
            return client.get("/metrics").text

    def tap(self, service: str) -> list[dict]:
        """Start streaming `service`'s tap in the background; events are appended as they come."""
        events: list[dict] = []
        socket = self.root / "run/vmesh" / f"{service}.sock"

        def follow() -> None:
            transport = httpx.HTTPTransport(uds=str(socket))
            with contextlib.suppress(httpx.HTTPError), httpx.Client(
                transport=transport, base_url="http://admin", timeout=None
            ) as c, c.stream("GET", "/v1/tap") as response:
                for line in response.iter_lines():  # ends when the proxy stops
                    if line.strip():
                        events.append(json.loads(line))

        threading.Thread(target=follow, daemon=True).start()
        return events

    @staticmethod
    def stats(backend: Process) -> dict:
        return httpx.get(f"http://127.0.0.1:{backend.port}/_stats", timeout=10).json()

    @staticmethod
    def control(backend: Process, **mode: object) -> None:
        httpx.post(f"http://127.0.0.1:{backend.port}/_control", content=json.dumps(mode),
                   timeout=10).raise_for_status()


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text, 0 when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@pytest.fixture(name="policy_mesh")
def policy_mesh_fixture(tmp_path: Path) -> Iterator[PolicyMesh]:
    """Import this into a test module to get the `policy_mesh` fixture."""
    mesh = PolicyMesh(Mesh(tmp_path))
    (tmp_path / "etc/vmesh/policy.d").mkdir(parents=True, exist_ok=True)
    try:
        yield mesh
    finally:
        mesh.mesh.stop()
        for backend in mesh.backends:
            backend.stop()
