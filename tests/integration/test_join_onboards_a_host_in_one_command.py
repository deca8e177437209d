"""`vmesh join` writes the service file, exchanges the token for a certificate from our CA, and
starts the proxy, which answers /ready; a reused token is refused in one line."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from cryptography import x509

from identity.pki import uri_sans
from tests.integration.identity_service import REPO, running_identity_service, vmesh
from tests.integration.mesh import wait_until
from tests.support import free_port


def free_address() -> str:
    return f"127.0.0.1:{free_port()}"


def test_join_then_proxy_ready_and_token_single_use(tmp_path: Path) -> None:
    ca, host = tmp_path / "ca", tmp_path / "host"
    vmesh(ca, "identity", "init")
    # the host's mesh.toml, as Ansible writes it: mDNS on loopback only (join keeps it)
    mesh_toml = host / "etc/vmesh/mesh.toml"
    mesh_toml.parent.mkdir(parents=True)
    mesh_toml.write_text('[discovery]\nbackend = "mdns"\ninterfaces = ["127.0.0.1"]\n')
    with running_identity_service(ca) as identity:
        token = vmesh(ca, "identity", "token", "create", "--host", "vm-7", "--services", "cart",
                      "--ttl", "5m").stdout.strip()
        admin = free_address()
        argv = [sys.executable, "-m", "vm_mesh", "join", "--token", token,
                "--identity", identity.url, "--service", "cart", "--app-port", "8080",
                "--host", "vm-7", "--inbound", "127.0.0.1:0", "--outbound", free_address(),
                "--admin", admin]
        env = {**os.environ, "VMESH_ROOT": str(host)}
        join = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(join.stdout or []), daemon=True)  # type: ignore[arg-type]
        reader.start()
        try:
            def ready() -> bool:  # asked on the local admin socket, as an operator would
                transport = httpx.HTTPTransport(uds=str(host / "run/vmesh/cart.sock"))
                try:
                    with httpx.Client(transport=transport, base_url="http://admin") as client:
                        return client.get("/ready", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, within=30, what="the joined proxy ready")
            wait_until(lambda: any('"proxy ready"' in line for line in lines), within=30,
                       what="the proxy's ready log line")
            service_file = (host / "etc/vmesh/services/cart.toml").read_text()
            assert f'identity_url = "{identity.url}"' in service_file
            assert 'interfaces = ["127.0.0.1"]' in mesh_toml.read_text()
            leaf = x509.load_pem_x509_certificate(
                (host / "var/lib/vmesh/cart/cert.pem").read_bytes())
            assert uri_sans(leaf) == ["spiffe://vmesh.local/svc/cart"]
            assert (host / "var/lib/vmesh/cart/key.pem").stat().st_mode & 0o077 == 0
        finally:
            join.send_signal(signal.SIGTERM)  # it became the proxy: SIGTERM drains it
            join.wait(timeout=60)
            reader.join(timeout=10)
        assert join.returncode == 0, lines[-5:]  # drained and exited, not killed
        assert any(line.startswith("wrote ") for line in lines)
        assert any(json.loads(line).get("msg") == "proxy ready"
                   for line in lines if line.startswith("{"))

        again = subprocess.run([*argv, "--no-start"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode != 0
        assert again.stderr.startswith(f"vmesh: the identity service at {identity.url} refused")
        assert again.stderr.count("\n") == 1

        other_ports = subprocess.run([*argv[:-6], "--no-start"], cwd=REPO, env=env,
                                     capture_output=True, text=True, timeout=60)
        assert other_ports.returncode != 0
        assert other_ports.stderr.strip().endswith(
            "cart.toml exists with other settings; edit it or remove it, then join again")


def test_join_reports_an_unreachable_identity_service(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    vmesh(ca, "identity", "init")
    token = vmesh(ca, "identity", "token", "create", "--host", "vm-7", "--services", "cart"
                  ).stdout.strip()
    nobody = f"https://{free_address()}"  # nothing listens there
    done = vmesh(tmp_path / "host", "join", "--token", token, "--identity", nobody,
                 "--service", "cart", "--app-port", "8080", "--host", "vm-7", "--no-start",
                 check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"vmesh: cannot reach the identity service at {nobody}: ")
    assert done.stderr.count("\n") == 1
