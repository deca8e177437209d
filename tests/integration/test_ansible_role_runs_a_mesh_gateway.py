"""Role vmesh_gateway, run by the real ansible-playbook on this machine (a supervised process
under a VMESH_ROOT of its own, the process path of hosts without systemd): a host whose
vmesh_gateway_enabled is true gets gateway.toml and a running `vmesh gateway run`, registered in
its site's Consul (the fake agent) at the WAN address the inventory gave; a second run changes
nothing; a host without Consul discovery fails with a sentence that says what is missing."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import REPO, TRUST_DOMAIN, wait_until

BIN = Path(sys.executable).parent
PLAYBOOK = """\
- name: Run a mesh gateway on this host
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Decide how vmesh processes run
      ansible.builtin.include_role: {name: vmesh, tasks_from: facts, public: true}
    - name: Run the gateway
      ansible.builtin.include_role: {name: vmesh_gateway}
"""


@pytest.fixture
def host(tmp_path: Path, agent: FakeConsul) -> Iterator[Path]:
    """A VMESH_ROOT whose `vmesh` runs this tree, with a mesh.toml on `agent`; the gateway the
    role started there is stopped by its PID file's PID at the end."""
    root = tmp_path / "host"
    for directory in ("etc/vmesh", "run/vmesh", "var/log/vmesh", "opt/vmesh/venv/bin"):
        (root / directory).mkdir(parents=True)
    vmesh = root / "opt/vmesh/venv/bin/vmesh"
    vmesh.write_text(f"#!/bin/sh\ncd {REPO}\nexec {sys.executable} -m vm_mesh \"$@\"\n")
    vmesh.chmod(0o755)
    (root / "etc/vmesh/mesh.toml").write_text(
        f'trust_domain = "{TRUST_DOMAIN}"\n[discovery]\n{agent.discovery_table()}')
    yield root
    pidfile = root / "run/vmesh/gateway.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), within=15,
                   what="the gateway exiting")


def playbook(root: Path, **variables: str) -> str:
    """Run the play on `root` as a host without systemd: its output; asserts nothing."""
    path = root.parent / "gateway.yml"
    path.write_text(PLAYBOOK)
    extra = {"vmesh_root": str(root), "vmesh_service_manager": "process",
             "vmesh_manage_user": False, "vmesh_discovery_backend": "consul",
             "vmesh_gateway_enabled": True, "vmesh_gateway_datacenter": "dc1",
             "vmesh_gateway_listen": "127.0.0.1:0", "vmesh_gateway_wan_address": "198.18.0.5",
             "vmesh_gateway_ready_timeout_s": 30, "ansible_python_interpreter": sys.executable,
             **variables}
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path.home()),
           "ANSIBLE_ROLES_PATH": str(REPO / "ansible/roles"), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             "-e", json.dumps(extra), str(path)],
                            env=env, capture_output=True, text=True, timeout=240)
    return f"rc={result.returncode}\n{result.stdout}{result.stderr}"


def test_an_enabled_gateway_runs_and_registers_at_its_wan_address(
    host: Path, agent: FakeConsul
) -> None:
    first = playbook(host)
    assert first.startswith("rc=0\n"), first

    config = (host / "etc/vmesh/gateway.toml").read_text()
    assert 'datacenter = "dc1"' in config and 'wan_address = "198.18.0.5"' in config
    wait_until(lambda: agent.health_entries("vmesh-gateway", passing=True), within=15,
               what="the gateway passing its agent's TCP check")
    [entry] = agent.health_entries("vmesh-gateway", passing=True)
    service = entry["Service"]
    assert service["ID"] == "vmesh-gateway-localhost"
    assert service["TaggedAddresses"]["wan"] == {"address": "198.18.0.5", "port": service["Port"]}
    assert service["TaggedAddresses"]["lan"] == {"address": "127.0.0.1", "port": service["Port"]}

    again = playbook(host)
    assert again.startswith("rc=0\n") and "changed=0" in again, again


def test_a_gateway_without_consul_discovery_fails_naming_what_it_needs(host: Path) -> None:
    output = playbook(host, vmesh_discovery_backend="mdns")
    assert not output.startswith("rc=0\n")
    assert 'needs vmesh_discovery_backend "consul" (it is "mdns")' in output
    assert not (host / "etc/vmesh/gateway.toml").exists()
