"""`vmesh cert-helper` keeps a mesh leaf renewed for a program no proxy fronts: Prometheus
scrapes a proxy with it after the helper's first leaf has expired, as a service identity
that may read /metrics and may not tap. Without a token and a leaf it says what to do."""

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from identity.client import LeafFiles
from identity.pki import identity_of, new_serial_hex
from tests.integration.identity_service import REPO, running_identity_service, vmesh
from tests.integration.mesh import Mesh, wait_until
from tests.integration.prometheus import query_until, running_prometheus, scrape_config
from tests.support import follow_json_logs


def start_helper(root: Path, *args: str, token: str) -> tuple[subprocess.Popen[str], list[dict]]:
    """The helper as its systemd unit runs it: the token in VMESH_JOIN_TOKEN, the identity
    service from mesh.toml."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vm_mesh", "cert-helper", *args],
        cwd=REPO, env={**os.environ, "VMESH_ROOT": str(root), "VMESH_JOIN_TOKEN": token},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    logs: list[dict] = []
    follow_json_logs(proc, logs, lambda record: None)
    return proc, logs


def test_prometheus_scrapes_with_the_renewed_leaf_after_the_first_expired(
        tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    scraper = tmp_path / "scraper"
    with running_identity_service(tmp_path, "--leaf-ttl", "6s") as service:
        token = vmesh(tmp_path, "identity", "token", "create", "--host", "prom-host",
                      "--services", "prometheus").stdout.strip()
        mesh_toml = tmp_path / "etc/vmesh/mesh.toml"
        mesh_toml.write_text(f'identity_url = "{service.url}"\n' + mesh_toml.read_text())
        helper, logs = start_helper(tmp_path, "prometheus", "--host", "prom-host",
                                    "--dir", str(scraper), token=token)
        try:
            api = mesh.start_proxy("api", 1)
            wait_until(lambda: any(r.get("msg") == "keeping the certificate renewed"
                                   for r in logs), within=20, what="the helper's first leaf")
            first = LeafFiles(scraper).leaf()
            assert str(identity_of(first)) == "spiffe://vmesh.local/svc/prometheus"
            expired_at = first.not_valid_after_utc.timestamp()
            wait_until(lambda: time.time() > expired_at + 1, within=20, what="the first leaf's end")
            renewed = [r for r in logs if r.get("msg") == "certificate renewed"]
            assert renewed and renewed[-1]["identity"] == "spiffe://vmesh.local/svc/prometheus"
            assert new_serial_hex(LeafFiles(scraper).leaf()) != new_serial_hex(first)

            admin = f"127.0.0.1:{api.ports['admin']}"
            config = tmp_path / "prometheus.yml"
            scrape_config(config, scraper, targets=(admin,))
            with running_prometheus(config, tmp_path / "tsdb") as query:
                query_until(query, 'up{job="vmesh"} == 1', bool)
            # a service identity reads metrics, and is no operator: tap is refused
            context = ssl.create_default_context(cafile=str(scraper / "bundle.pem"))
            context.check_hostname = False  # mesh leaves name a SPIFFE ID, not a host
            context.load_cert_chain(scraper / "cert.pem", scraper / "key.pem")
            with httpx.Client(verify=context) as client:
                tapped = client.get(f"https://{admin}/v1/tap")
            assert tapped.status_code == 403 and "operator" in tapped.text
        finally:
            helper.send_signal(signal.SIGTERM)
            assert helper.wait(timeout=20) == 0
            mesh.stop()


def test_without_a_token_or_a_leaf_it_says_what_to_ask_the_ca_host_for(tmp_path: Path) -> None:
    nowhere = vmesh(tmp_path, "cert-helper", "prometheus", check=False)
    assert nowhere.returncode != 0
    assert "pass --identity URL or set identity_url in" in nowhere.stderr
    result = vmesh(tmp_path, "cert-helper", "prometheus", "--identity", "https://ca:8443",
                   "--host", "prom-host", check=False)
    assert result.returncode != 0
    assert "no valid certificate of prometheus" in result.stderr
    assert "vmesh identity token create --host prom-host --services prometheus" in result.stderr


def test_a_directory_holding_another_identity_is_left_alone(tmp_path: Path) -> None:
    held = Mesh(tmp_path).issue("api", directory=tmp_path / "api-certs")
    before = (held / "cert.pem").read_bytes()
    result = vmesh(tmp_path, "cert-helper", "prometheus", "--identity", "https://ca:8443",
                   "--token", "unused", "--dir", str(held), check=False)
    assert result.returncode != 0
    assert "holds spiffe://vmesh.local/svc/api, not a leaf of svc/prometheus" in result.stderr
    assert (held / "cert.pem").read_bytes() == before


def test_once_obtains_the_first_leaf_and_a_second_run_keeps_it(tmp_path: Path) -> None:
    Mesh(tmp_path)  # the CA
    directory = tmp_path / "scraper"
    with running_identity_service(tmp_path) as service:
        token = vmesh(tmp_path, "identity", "token", "create", "--host", "prom-host",
                      "--services", "prometheus").stdout.strip()
        args = ("cert-helper", "prometheus", "--once", "--identity", service.url,
                "--host", "prom-host", "--dir", str(directory))
        first = vmesh(tmp_path, *args, "--token", token)
        leaf = LeafFiles(directory).leaf()
        assert str(identity_of(leaf)) == "spiffe://vmesh.local/svc/prometheus"
        assert "spiffe://vmesh.local/svc/prometheus, valid until" in first.stdout
        # provisioning again: the leaf is valid, so the spent token is not even needed
        again = vmesh(tmp_path, *args)
    assert again.stdout == first.stdout
    assert new_serial_hex(LeafFiles(directory).leaf()) == new_serial_hex(leaf)
