"""Multi-site through mesh gateways: dc1's mesh.toml says `gateways = ["east"]`, so an app's
request for `api.east.mesh` goes from its proxy to east's gateway (found as `vmesh-gateway` in
datacenter east through dc1's agent), which reads the server name of the TLS handshake and
carries the connection, unopened, to east's instance of `api`. The handshake is between dc1's
proxy and east's: east's app sees the dc1 caller's own identity. The gateway refuses names it
cannot carry with a TLS alert, a log line and a count; once it is stopped, the caller's requests
fail with a reason that names the gateway.

Each site has its own fake agent (federated as over the WAN) and VMESH_ROOT; one CA.
"""

import secrets
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import Mesh, ProxyProcess, start_gateway_process, wait_until
from tests.integration.mesh import get_via as get
from tests.integration.mesh import upstream_of as upstream
from tests.integration.processes import Process, start_backend

TRUST_DOMAIN = "vmesh.local"


@dataclass
class Sites:
    home: Mesh  # dc1, which reaches east through east's gateways
    east: Mesh
    backends: list[Process]
    gateways: list[ProxyProcess]

    def start_east_api(self) -> tuple[str, ProxyProcess]:
        """A new service `api<hex>` in east, its app and proxy, and east's gateway: the name
        and the gateway."""
        name = f"api{secrets.token_hex(3)}"
        self.backends.append(start_backend(f"{name}-east-app"))
        self.east.start_proxy(name, self.backends[-1].port, instance_id=f"{name}-east")
        return name, self.start_gateway()

    def start_gateway(self) -> ProxyProcess:
        """East's gateway on a loopback port of its own (its wan address: that port)."""
        config = self.east.root / "etc/vmesh/gateway.toml"
        config.write_text('datacenter = "east"\nlisten = "127.0.0.1:0"\n'
                          'wan_address = "127.0.0.1"\ninstance_id = "east-gw-1"\n'
                          'drain = "1s"\n')
        gateway = start_gateway_process(self.east.env)
        self.gateways.append(gateway)
        return gateway


@pytest.fixture
def sites(tmp_path: Path, agent: FakeConsul, east: FakeConsul) -> Iterator[Sites]:
    home = Mesh(tmp_path / "dc1", ca_dir=None,
                discovery=agent.discovery_table() + 'gateways = ["east"]\n')
    far = Mesh(tmp_path / "east", discovery=east.discovery_table(), ca_dir=home.ca_dir)
    found = Sites(home, far, [], [])
    yield found
    home.stop()
    far.stop()
    for gateway in found.gateways:
        gateway.stop()
    for backend in found.backends:
        backend.stop()


def handshake_with(port: int, server_name: str) -> str:
    """A TLS handshake with the gateway naming `server_name`, as a stranger without a mesh
    certificate would start it: the error the client gets."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=server_name):
                return "handshake completed"
        except (ssl.SSLError, ConnectionError) as exc:
            return str(exc)


def test_a_request_crosses_to_east_through_its_gateway_with_the_callers_identity(
    agent: FakeConsul, sites: Sites
) -> None:
    name, gateway = sites.start_east_api()
    front = sites.home.start_proxy(f"front{secrets.token_hex(3)}", 1)

    wait_until(lambda: get(front, f"{name}.east.mesh").status_code == 200, within=15,
               what="east's gateway and instance passing their checks and found from dc1")
    answer = get(front, f"{name}.east.mesh").json()
    assert answer["name"] == f"{name}-east-app"
    # the east proxy authenticated dc1's proxy itself, through the gateway
    assert answer["client_id"] == f"spiffe://{TRUST_DOMAIN}/svc/{front.service}"

    # the caller sees the gateway as the instance of api.east, and the name it asks it for
    remote = upstream(front, f"{name}.east")
    assert [(i["id"], i["addr"], i["gateway"]) for i in remote["instances"]] == [
        ("east-gw-1", f"127.0.0.1:{gateway.ports['port']}",
         {"server_name": f"{name}.east.{TRUST_DOMAIN}"})]
    assert any(p.startswith("/v1/health/service/vmesh-gateway?") and "dc=east" in p
               for p in agent.requests)
    assert not any(p.startswith(f"/v1/health/service/{name}?") for p in agent.requests)
    # the gateway carried it, and the east instance's identity is checked as ever
    assert gateway.metric("gateway_connection_total", dst_service=name) >= 1
    assert gateway.metric("gateway_bytes_total", dst_service=name, direction="from_service") > 0
    wait_until(lambda: front.metric("response_total", dst_service=f"{name}.east",
                                    status_code="200",
                                    server_id=f"spiffe://{TRUST_DOMAIN}/svc/{name}") == 2,
               what="metrics counting the answers from east under dst_service api.east")


def test_the_gateway_refuses_what_it_cannot_carry_and_its_loss_is_a_clear_failure(
    agent: FakeConsul, sites: Sites
) -> None:
    name, gateway = sites.start_east_api()
    port = gateway.ports["port"]

    assert "UNRECOGNIZED_NAME" in handshake_with(port, f"{name}.west.{TRUST_DOMAIN}")
    assert "UNRECOGNIZED_NAME" in handshake_with(port, f"{name}.east.other.td")
    assert "INTERNAL_ERROR" in handshake_with(port, f"nosuch.east.{TRUST_DOMAIN}")
    for reason in ("gateway.other_site", "gateway.unknown_name", "gateway.no_instances"):
        assert gateway.metric("gateway_refused_total", reason=reason) == 1
        line = gateway.wait_for_log(lambda line, reason=reason: line.get("reason") == reason)
        assert line["msg"] == "gateway refused a connection"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
        assert raw.recv(100) == b""  # closed, nothing said: it does not speak HTTP
    assert gateway.metric("gateway_refused_total", reason="gateway.not_tls") == 1

    front = sites.home.start_proxy(f"front{secrets.token_hex(3)}", 1)
    wait_until(lambda: get(front, f"{name}.east.mesh").status_code == 200, within=15,
               what="the request crossing through the gateway")

    gateway.stop()  # leaves east's Consul, cuts what it carried after its drain
    wait_until(lambda: get(front, f"{name}.east.mesh").status_code == 503, within=15,
               what="dc1 seeing east's gateway gone")
    refused = get(front, f"{name}.east.mesh")
    assert refused.headers["vmesh-error"] == "no_endpoints"
    assert "discovery lists no mesh gateway of datacenter east" in refused.text
    assert upstream(front, f"{name}.east")["instances"] == []
