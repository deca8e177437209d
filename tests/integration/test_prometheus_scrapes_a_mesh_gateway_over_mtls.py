"""A mesh gateway with `admin_port` in gateway.toml serves its admin API over mTLS as a proxy
serves port 4191: `vmesh targets` lists it from Consul, and a real Prometheus with the
documented scrape config reads its `gateway_*` metrics; a caller without a client certificate
gets `/ready` and `/live` only; and the port serves the leaf the gateway renews itself and the
one another program puts in its directory, without a restart."""

import contextlib
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
from cryptography import x509

from identity.client import LeafFiles
from identity.pki import new_serial_hex
from tests.fake_consul import FakeConsul
from tests.integration.identity_service import running_identity_service, vmesh
from tests.integration.mesh import (
    TRUST_DOMAIN,
    Mesh,
    ProxyProcess,
    start_gateway_process,
    wait_until,
)
from tests.integration.prometheus import documented_config, query_until, running_prometheus
from tests.support import client_hello

GATEWAY_TOML = ('datacenter = "dc1"\nlisten = "127.0.0.1:0"\nwan_address = "127.0.0.1"\n'
                'instance_id = "gw-1"\nadmin_port = 0\n')


def gateway_site(tmp_path: Path, agent: FakeConsul) -> Mesh:
    site = Mesh(tmp_path / "dc1", discovery=agent.discovery_table())
    (site.root / "etc/vmesh/gateway.toml").write_text(GATEWAY_TOML)
    return site


@contextlib.contextmanager
def certified_gateway(site: Mesh) -> Iterator[ProxyProcess]:
    """The site's gateway, with a leaf of svc/vmesh-gateway put in its state directory."""
    site.issue("vmesh-gateway")
    gateway = start_gateway_process(site.env)
    try:
        yield gateway
    finally:
        gateway.stop()


def knock_for_another_site(gateway: ProxyProcess) -> None:
    """A ClientHello for another datacenter's service: refused with an alert, and counted."""
    with socket.create_connection(("127.0.0.1", gateway.ports["port"]), timeout=10) as raw:
        raw.sendall(client_hello(f"api.west.{TRUST_DOMAIN}"))
        while raw.recv(100):
            pass


def served_serial(port: int) -> str:
    """The serial of the leaf the admin port presents to a new connection."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
    return new_serial_hex(x509.load_pem_x509_certificate(pem.encode()))


def test_prometheus_scrapes_the_gateway_that_vmesh_targets_lists(
    tmp_path: Path, agent: FakeConsul
) -> None:
    site = gateway_site(tmp_path, agent)
    scraper = site.issue("prometheus", directory=tmp_path / "scraper")
    with certified_gateway(site) as gateway:
        knock_for_another_site(gateway)
        admin = f"127.0.0.1:{gateway.ports['admin']}"

        targets = tmp_path / "targets.json"
        listed = vmesh(site.root, "targets", "--no-host-discovery",
                       "--consul", f"http://{agent.host}:{agent.port}", "--out", str(targets))
        assert listed.returncode == 0, listed.stderr
        assert json.loads(targets.read_text()) == [
            {"targets": [admin], "labels": {"vmesh_instance": "gw-1", "vmesh_discovery": "consul"}}
        ]

        config_file = tmp_path / "prometheus.yml"
        documented_config(config_file, scraper, targets)
        with running_prometheus(config_file, tmp_path / "tsdb") as url:
            refused = query_until(url, 'gateway_refused_total{vmesh_instance="gw-1"}', bool)
            listeners = query_until(url, 'tcp_max_connections{vmesh_instance="gw-1"}',
                                    lambda result: len(result) == 3)
        assert [(r["metric"]["reason"], r["metric"]["instance"], r["value"][1])
                for r in refused] == [("gateway.other_site", admin, "1")]
        assert {r["metric"]["listener"] for r in listeners} == {"gateway", "admin",
                                                                 "admin-socket"}


def test_without_a_client_certificate_only_health_answers_and_a_new_leaf_is_served(
    tmp_path: Path, agent: FakeConsul
) -> None:
    site = gateway_site(tmp_path, agent)
    caller = site.issue("web", directory=tmp_path / "web")
    with certified_gateway(site) as gateway:
        base = f"https://127.0.0.1:{gateway.ports['admin']}"
        anonymous = ssl.create_default_context(cafile=str(caller / "bundle.pem"))
        anonymous.check_hostname = False  # mesh leaves name a SPIFFE ID, not this address
        with httpx.Client(base_url=base, verify=anonymous, timeout=10) as client:
            assert client.get("/ready").json() == {"ready": True, "reason": "ready"}
            assert client.get("/live").status_code == 200
            refused = client.get("/metrics")
        assert refused.status_code == 403
        assert refused.json()["error"] == "admin.client_certificate_required"

        meshed = ssl.create_default_context(cafile=str(caller / "bundle.pem"))
        meshed.check_hostname = False
        meshed.load_cert_chain(caller / "cert.pem", caller / "key.pem")
        with httpx.Client(base_url=base, verify=meshed, timeout=10) as client:
            metrics = client.get("/metrics")
            stats = client.get("/v1/stats")
            tapped = client.get("/v1/tap")
        assert metrics.status_code == 200 and "gateway_open_connections" in metrics.text
        assert "gateway" in stats.json()["listeners"]
        assert tapped.status_code == 403 and tapped.json()["error"] == "admin.operator_only"

        # a leaf another program puts in the gateway's directory (a rotation) is served
        port = gateway.ports["admin"]
        first = served_serial(port)
        handed = new_serial_hex(LeafFiles(site.issue("vmesh-gateway")).leaf())
        assert handed != first
        wait_until(lambda: served_serial(port) == handed,
                   what="the admin port serving the leaf put in its directory")


def test_the_admin_port_serves_each_renewed_leaf(tmp_path: Path, agent: FakeConsul) -> None:
    site = gateway_site(tmp_path, agent)
    directory = site.root / "var/lib/vmesh/vmesh-gateway"
    with running_identity_service(site.root, "--leaf-ttl", "6s") as service:
        mesh_toml = site.root / "etc/vmesh/mesh.toml"
        mesh_toml.write_text(f'identity_url = "{service.url}"\n' + mesh_toml.read_text())
        token = vmesh(site.root, "identity", "token", "create", "--host", "gw-host",
                      "--services", "vmesh-gateway").stdout.strip()
        # the first leaf, as the README says to provision it
        vmesh(site.root, "cert-helper", "vmesh-gateway", "--once", "--host", "gw-host",
              "--token", token)
        first = new_serial_hex(LeafFiles(directory).leaf())
        gateway = start_gateway_process(site.env)
        try:
            port = gateway.ports["admin"]
            assert served_serial(port) == first
            renewed = gateway.wait_for_log(lambda line: line.get("msg") == "certificate renewed",
                                           within=20)
            assert renewed["identity"] == f"spiffe://{TRUST_DOMAIN}/svc/vmesh-gateway"
            wait_until(lambda: served_serial(port) != first, within=10,
                       what="the admin port serving the renewed leaf")
            leaf = LeafFiles(directory).leaf()
            assert served_serial(port) == new_serial_hex(leaf)
            # what the expiry alerts watch, for the proxies' leaves and the gateway's
            assert gateway.metric("identity_cert_expiration_timestamp_seconds") == (
                leaf.not_valid_after_utc.timestamp())
        finally:
            gateway.stop()


def test_a_gateway_given_another_identity_leaf_refuses_to_start_saying_whose(
    tmp_path: Path, agent: FakeConsul
) -> None:
    site = gateway_site(tmp_path, agent)
    site.issue("web", directory=site.root / "var/lib/vmesh/vmesh-gateway")
    refused = vmesh(site.root, "gateway", "run", check=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"vmesh: {site.root}/etc/vmesh/gateway.toml: admin_port serves a certificate of "
        f"svc/vmesh-gateway, and {site.root}/var/lib/vmesh/vmesh-gateway holds one of "
        f"spiffe://{TRUST_DOMAIN}/svc/web: put the gateway's own there "
        "(vmesh cert-helper vmesh-gateway --once)\n")
