"""`vmesh join` against a real identity service: certificate, service file, running proxy.

Refusals are one line naming what failed: a bad token, an unreachable CA, a
token made for another CA (pin mismatch); none of them leaves a service file.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from identity.client import LeafFiles
from identity.spiffe import of_certificate
from tests.integration.identity_service import (
    REPO,
    IdentityService,
    running_identity_service,
    vmesh,
)
from tests.integration.mesh import wait_until
from vm_mesh.config import load_service_config


@pytest.fixture
def ca(tmp_path: Path) -> Iterator[IdentityService]:
    root = tmp_path / "ca"
    vmesh(root, "identity", "init")
    with running_identity_service(root) as service:
        yield service


def token_for(root: Path, host: str, service: str) -> str:
    return vmesh(root, "identity", "token", "create", "--host", host,
                 "--services", service).stdout.strip()


def join_args(token: str, url: str, service: str = "api") -> list[str]:
    return ["join", "--token", token, "--identity", url, "--service", service,
            "--app-port", "8080", "--host", "vm1", "--inbound", "127.0.0.1:0",
            "--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"]


def test_join_writes_the_service_file_and_the_first_certificate(
    ca: IdentityService, tmp_path: Path
) -> None:
    host_root = tmp_path / "vm1"
    token = token_for(ca.root, "vm1", "api")
    result = vmesh(host_root, *join_args(token, ca.url), "--discovery", "consul", "--no-start")
    assert "joined as api" in result.stderr

    config = load_service_config(host_root / "etc/vmesh/services/api.toml").config
    assert (config.service, config.app_port) == ("api", 8080)
    assert config.identity_url == ca.url and config.discovery.backend == "consul"
    leaf = LeafFiles(host_root / "var/lib/vmesh/api").leaf()
    assert str(of_certificate(leaf)).endswith("/svc/api")

    again = vmesh(host_root, *join_args(token, ca.url), "--no-start", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr


def refused(host_root: Path, *args: str) -> str:
    result = vmesh(host_root, *args, check=False)
    assert result.returncode != 0
    assert not (host_root / "etc/vmesh/services/api.toml").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_bad_token_unreachable_ca_and_foreign_ca_are_one_line_refusals(
    ca: IdentityService, tmp_path: Path
) -> None:
    host_root = tmp_path / "vm1"
    assert "token.malformed" in refused(host_root, *join_args("not-a-token", ca.url), "--no-start")

    used = token_for(ca.root, "vm1", "api")
    vmesh(host_root, *join_args(used, ca.url), "--no-start")
    (host_root / "etc/vmesh/services/api.toml").unlink()
    assert "refused the join" in refused(host_root, *join_args(used, ca.url), "--no-start")

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"https://127.0.0.1:{closed.getsockname()[1]}"
    line = refused(host_root, *join_args(token_for(ca.root, "vm1", "api"), nowhere), "--no-start")
    assert "cannot reach the identity service" in line and nowhere in line

    other = tmp_path / "other-ca"
    vmesh(other, "identity", "init")
    foreign = token_for(other, "vm1", "api")
    assert "anchor pin mismatch" in refused(host_root, *join_args(foreign, ca.url), "--no-start")


def test_join_starts_the_proxy_which_drains_on_sigterm(
    ca: IdentityService, tmp_path: Path
) -> None:
    host_root = tmp_path / "vm1"
    token = token_for(ca.root, "vm1", "api")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vm_mesh", *join_args(token, ca.url), "--discovery", "static"],
        cwd=REPO, env={**os.environ, "VMESH_ROOT": str(host_root)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[dict] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                lines.append({"msg": line.rstrip()})

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(lambda: any(x.get("msg") == "proxy ready" for x in lines), within=20,
                   what="the proxy started by join being ready")
        ready = next(x for x in lines if x.get("msg") == "proxy ready")
        assert ready["service"] == "api" and ready["identity"].endswith("/svc/api")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        wait_until(lambda: any(x.get("msg") == "stopped" for x in lines), within=5,
                   what="the proxy's last log line")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
