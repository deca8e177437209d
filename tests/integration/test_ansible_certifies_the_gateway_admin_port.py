"""A mesh gateway whose inventory gives it an admin port (vmesh_gateway_admin_port) gets the
leaf that port serves from site.yml itself, as a cert-helper does (no manual step), and a
real rotate-certs.yml takes that port along: once the old generation is retired, the gateway
serves a leaf of the new issuer, trusts only the new anchor, and the scraper's renewed leaf
still reads its metrics. The host is this machine under a VMESH_ROOT of its own, its Consul
the fake agent (tests/fake_consul.py)."""

import ssl
from collections.abc import Iterator

import httpx
import pytest

from tests.fake_consul import FakeConsul
from tests.integration.ansible_host import LocalHost
from tests.integration.mesh import REPO, TRUST_DOMAIN
from tests.integration.supervised import admin_get
from tests.support import free_ports


@pytest.fixture
def gateway_host(tmp_path_factory: pytest.TempPathFactory, agent: FakeConsul,
                 ) -> Iterator[LocalHost]:
    """A host of Consul discovery that runs api, a cert-helper for `scraper` and the site's
    gateway with an admin port; its processes are stopped at the end. (A short directory:
    the admin sockets' paths must fit a unix socket address.)"""
    host = LocalHost(tmp_path_factory.mktemp("gw"))
    [admin_port] = free_ports(1)
    host.variables.update({
        "vmesh_discovery_backend": "consul",
        "vmesh_discovery_consul_url": f"http://{agent.host}:{agent.port}",
        "vmesh_gateway_enabled": True, "vmesh_gateway_datacenter": "dc1",
        "vmesh_gateway_listen": "127.0.0.1:0", "vmesh_gateway_wan_address": "198.18.0.5",
        "vmesh_gateway_admin_port": admin_port, "vmesh_gateway_ready_timeout_s": 30,
    })
    try:
        yield host
    finally:
        host.stop()


def scrape(host: LocalHost) -> httpx.Response:
    """GET /metrics from the gateway's admin port with the scraper's current leaf."""
    leaf = host.root / "var/lib/vmesh/scraper"
    context = ssl.create_default_context(cafile=str(leaf / "bundle.pem"))
    context.check_hostname = False  # mesh leaves name a SPIFFE ID, not an address
    context.load_cert_chain(leaf / "cert.pem", leaf / "key.pem")
    port = host.variables["vmesh_gateway_admin_port"]
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(f"https://127.0.0.1:{port}/metrics")


def certs(host: LocalHost, process: str) -> dict:
    """`/v1/certs` of `process` (a service's proxy, or vmesh-gateway) over its admin socket."""
    return admin_get(host.root, process, "/v1/certs").json()


def issuer_and_anchors(view: dict) -> tuple[str, list[str]]:
    return view["chain"][1]["serial"], sorted(anchor["serial"] for anchor in view["bundle"])


def test_site_certifies_the_gateway_admin_port_and_rotation_takes_it_along(
        gateway_host: LocalHost) -> None:
    first = gateway_host.playbook()
    assert first.returncode == 0, first.output[-4000:]
    gateway = certs(gateway_host, "vmesh-gateway")
    assert gateway["identity"] == f"spiffe://{TRUST_DOMAIN}/svc/vmesh-gateway"
    assert issuer_and_anchors(gateway) == issuer_and_anchors(certs(gateway_host, "api"))
    scraped = scrape(gateway_host)
    assert scraped.status_code == 200 and "gateway_open_connections" in scraped.text

    rotation = gateway_host.playbook(play=REPO / "ansible/rotate-certs.yml")
    assert rotation.returncode == 0, rotation.output[-4000:]
    rotated = certs(gateway_host, "vmesh-gateway")
    assert issuer_and_anchors(rotated) == issuer_and_anchors(certs(gateway_host, "api"))
    assert issuer_and_anchors(rotated) != issuer_and_anchors(gateway)  # a new issuer, anchor
    assert len(rotated["bundle"]) == 1  # the old anchor retired
    scraped = scrape(gateway_host)
    assert scraped.status_code == 200 and "gateway_open_connections" in scraped.text
