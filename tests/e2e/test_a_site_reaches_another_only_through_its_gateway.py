"""Two sites whose networks do not route to each other (network namespaces on two bridges):
west's host has a leg in the WAN only, east's instance in east's network only, and east's
gateway host in both. A west app's request for `api.east.mesh` crosses east's gateway, is
answered by east's app, which sees the west caller's own identity, while west cannot even open
a connection to east's instance. A west app's opaque TCP connection through its proxy's [[tcp]]
listener for `echo.east` crosses the gateway the same way.

Discovery: each site's fake Consul agent (federated as over the WAN, in one process on a host
of its own with a leg in each network: fake agents federate in memory) answers its own site's
hosts; certificates come from one CA of the trust domain, written before the proxies start."""

import secrets
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.apps import first_answer, start_service_proxy
from tests.e2e.lan import Host, networks
from tests.integration.mesh import (
    TRUST_DOMAIN,
    Mesh,
    ProxyProcess,
    start_gateway_process,
    upstream_of,
    wait_until,
)
from tests.integration.processes import start_backend, start_echo
from tests.support import follow_json_logs, require_tool

pytestmark = pytest.mark.e2e

WAN, EAST = 0, 1  # the networks: west's host and the gateway's outside leg; east's inside

CONNECT = """\
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("connected")
except OSError as exc:
    print(exc.strerror or exc)
"""

TALK = """\
import socket, sys
received = b""
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as sock:
        sock.sendall(b"ping\\n")
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
except OSError as exc:
    received = str(exc).encode()
sys.stdout.write(received.decode())
"""


@dataclass
class Sites:
    west: Host
    gateway: Host
    east: Host
    agents: dict[str, str]  # datacenter -> its agent's URL

    def discovery(self, datacenter: str, extra: str = "") -> str:
        return (f'backend = "consul"\nconsul_url = "{self.agents[datacenter]}"\n'
                f'consul_wait = "1s"\nconsul_check_interval = "200ms"\n{extra}')

    def start_proxy(self, host: Host, service: str, app_port: int,
                    ca: Path | None, extra: str = "") -> tuple[Mesh, ProxyProcess]:
        """`service`'s proxy on `host`, in west's site (dc1) or east's, with a leaf of the CA
        at `ca` (None: a new CA, the trust domain's); `extra`: more of its service file."""
        datacenter = "dc1" if host is self.west else "east"
        gateways = 'gateways = ["east"]\n' if datacenter == "dc1" else ""
        mesh = Mesh(host.root, discovery=self.discovery(datacenter, gateways), ca_dir=ca)
        mesh.issue(service)
        return mesh, start_service_proxy(host, service, app_port, f"{service}-{datacenter}",
                                         extra)

    def start_gateway(self) -> ProxyProcess:
        """East's gateway: other sites reach it on its WAN leg, east's agent checks it on its
        east leg."""
        gateway = self.gateway
        (gateway.root / "etc/vmesh").mkdir(parents=True)
        (gateway.root / "etc/vmesh/mesh.toml").write_text(
            f'trust_domain = "{TRUST_DOMAIN}"\n[discovery]\n{self.discovery("east")}')
        (gateway.root / "etc/vmesh/gateway.toml").write_text(
            f'datacenter = "east"\nlisten = "0.0.0.0:4180"\n'
            f'wan_address = "{gateway.addresses[0]}"\nlan_address = "{gateway.addresses[1]}"\n'
            'instance_id = "east-gw-1"\ndrain = "1s"\n')
        carrier = start_gateway_process(gateway.env, prefix=gateway.command([]))
        gateway.adopt(carrier.proc)
        return carrier


def start_agents(host: Host) -> dict[str, str]:
    """dc1's agent on `host`'s WAN leg and east's on its east leg, federated: their URLs."""
    proc = host.popen([sys.executable, "-m", "tests.fake_consul", "--listen", host.addresses[0],
                       "--datacenter", "dc1", "--federate", f"east@{host.addresses[1]}"])
    agents: dict[str, str] = {}
    both = threading.Event()

    def on_record(record: dict) -> None:
        if record.get("msg") == "fake consul listening":
            agents[record["datacenter"]] = f"http://{record['listen']}"
            if len(agents) == 2:
                both.set()

    follow_json_logs(proc, [], on_record)
    assert both.wait(20), f"the fake agents did not start: {agents}"
    return agents


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Sites]:
    require_tool("curl")
    layout = [[WAN], [WAN, EAST], [EAST], [WAN, EAST]]  # west, gateway, east, the agents
    with networks(layout, tmp_path) as (west, gateway, east, consul):
        yield Sites(west, gateway, east, start_agents(consul))


def connect_from(host: Host, address: str, port: int) -> str:
    """What a TCP connect from `host` to `address:port` gives: "connected" or the error."""
    result = host.run([sys.executable, "-c", CONNECT, address, str(port)])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_west_app_reaches_east_only_through_its_gateway_with_its_own_identity(
    sites: Sites,
) -> None:
    west, gateway, east = sites.west, sites.gateway, sites.east
    api = f"api{secrets.token_hex(3)}"
    app = start_backend(f"{api}@east", prefix=east.command([]))
    east.adopt(app.proc)
    east_mesh, api_proxy = sites.start_proxy(east, api, app.port, ca=None)

    carrier = sites.start_gateway()

    _, front = sites.start_proxy(west, "front", 1, ca=east_mesh.ca_dir)

    # the point of a gateway: west has no route to east's instance, only to the gateway
    inbound = api_proxy.ports["inbound"]
    assert connect_from(west, east.address, inbound) == "Network is unreachable"
    assert connect_from(gateway, east.address, inbound) == "connected"

    answer = first_answer(west, front, f"{api}.east", within=30)
    assert answer["name"] == f"{api}@east"
    assert answer["client_id"] == f"spiffe://{TRUST_DOMAIN}/svc/front"  # dc1's caller itself
    # west went to the gateway's WAN address, asking it for east's api by name
    assert [(i["addr"], i["gateway"]) for i in upstream_of(front, f"{api}.east")["instances"]] == [
        (f"{gateway.addresses[0]}:4180", {"server_name": f"{api}.east.{TRUST_DOMAIN}"})]
    assert carrier.metric("gateway_connection_total", dst_service=api) >= 1



def talk_from(host: Host, port: int) -> str:
    """What an app on `host` gets back for `ping` through its proxy's listener at `port`."""
    result = host.run([sys.executable, "-c", TALK, str(port)])
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_west_tcp_connection_reaches_east_only_through_its_gateway(sites: Sites) -> None:
    west, east = sites.west, sites.east
    echo = f"echo{secrets.token_hex(3)}"
    app = start_echo(f"{echo}@east", prefix=east.command([]))
    east.adopt(app.proc)
    east_mesh, echo_proxy = sites.start_proxy(east, echo, app.port, ca=None)
    carrier = sites.start_gateway()
    _, front = sites.start_proxy(
        west, "front", 1, ca=east_mesh.ca_dir,
        extra=f'[[tcp]]\nservice = "{echo}.east"\nlisten = "127.0.0.1:0"\n')

    assert connect_from(west, east.address, echo_proxy.ports["inbound"]) == "Network is unreachable"
    port = front.ports[f"tcp:{echo}.east"]
    # east's name, then the echo: the first connections may find no instance listed yet
    wait_until(lambda: talk_from(west, port) == f"{echo}@east\nping\n", within=30,
               what="west's connection answered by east's echo")
    # west went to the gateway's WAN address, asking it for east's echo by name
    assert [(i["addr"], i["gateway"]) for i in upstream_of(front, f"{echo}.east")["instances"]] == [
        (f"{sites.gateway.addresses[0]}:4180", {"server_name": f"{echo}.east.{TRUST_DOMAIN}"})]
    assert carrier.metric("gateway_connection_total", dst_service=echo) >= 1
    assert front.metric("tcp_open_total", dst_service=f"{echo}.east",
                        server_id=f"spiffe://{TRUST_DOMAIN}/svc/{echo}") >= 1
