"""A proxy under a VMESH_ROOT so deep that its admin socket's path would not fit a unix
socket address does not start, and says which path, its length and what to do, instead of
the kernel's bare "AF_UNIX path too long"."""

import subprocess
import sys
from pathlib import Path

from tests.integration.mesh import REPO, Mesh
from tests.support import free_ports


def test_a_proxy_under_a_root_too_deep_refuses_to_start_naming_its_socket(
        tmp_path: Path) -> None:
    root = tmp_path / ("deep-" * 20)
    mesh = Mesh(root)
    [app_port] = free_ports(1)
    mesh.configure("api", app_port)
    mesh.issue("api")
    socket_path = root / "run/vmesh/api.sock"
    length = len(str(socket_path).encode())
    assert length > 107

    refused = subprocess.run([sys.executable, "-m", "vm_mesh", "proxy", "run", "api"], cwd=REPO,
                             env=mesh.env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f"vmesh: {socket_path}: a unix socket's path holds at most 107 bytes, this one has "
        f"{length}; set a shorter VMESH_ROOT")
    assert not socket_path.exists()
