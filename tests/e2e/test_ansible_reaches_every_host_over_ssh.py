"""The harness itself: Ansible logs into every namespace host by key and sees its own root."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.sshhosts import SshCluster

pytestmark = pytest.mark.e2e

ANSIBLE = str(Path(sys.executable).with_name("ansible"))


def test_ansible_ping_succeeds_on_every_host(three_hosts: SshCluster) -> None:
    inventory = three_hosts.write_inventory(three_hosts.workdir / "ping.ini")
    result = subprocess.run(
        [ANSIBLE, "all", "-i", str(inventory), "-m", "ansible.builtin.ping", "--one-line"],
        env=three_hosts.ansible_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for host in three_hosts.hosts:
        assert f'{host.name} | SUCCESS' in result.stdout


def test_each_host_sees_its_own_vmesh_root_and_address(three_hosts: SshCluster) -> None:
    inventory = three_hosts.write_inventory(three_hosts.workdir / "env.ini")
    result = subprocess.run(
        [ANSIBLE, "all", "-i", str(inventory), "--one-line", "-m", "ansible.builtin.shell",
         "-a", 'echo "root=$VMESH_ROOT addr=$(ip -4 -o addr show dev eth0 | cut -d" " -f7)"'],
        env=three_hosts.ansible_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for host in three_hosts.hosts:
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"{host.name} |"))
        assert f"root={host.vmesh_root}" in line
        assert f"addr={host.address}/24" in line


def test_password_login_is_refused(three_hosts: SshCluster) -> None:
    host = three_hosts.hosts[0]
    result = subprocess.run(
        ["ssh", "-o", f"UserKnownHostsFile={three_hosts.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=5",
         f"root@{host.address}", "true"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 255
    assert "Permission denied" in result.stderr
