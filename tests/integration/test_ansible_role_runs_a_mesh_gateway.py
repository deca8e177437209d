"""Role vmesh_gateway, run by the real ansible-playbook on this machine (a supervised process
under a VMESH_ROOT of its own, the process path of hosts without systemd): a host whose
vmesh_gateway_enabled is true gets gateway.toml and a running `vmesh gateway run`, registered in
its site's Consul (the fake agent) at the WAN address the inventory gave; a second run changes
nothing; a host without Consul discovery fails with a sentence that says what is missing; the
cap the inventory sets is the running gateway's, and a bad one fails the play.
Turned off again, the role stops the gateway, deregisters it and removes its configuration.
Before a restart (upgrade.yml), its drain tasks take it out of the agent's passing set and wait
until the connection it still carries ends; the restart then registers it again."""

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import REPO, TRUST_DOMAIN, wait_until
from tests.support import client_hello, echo_server

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
# what upgrade.yml does with a gateway host's gateway, the installation left out
RESTART = PLAYBOOK.replace("""    - name: Run the gateway
""", """    - name: Take the gateway out of rotation and drain it
      ansible.builtin.include_role: {name: vmesh_gateway, tasks_from: drain}
    - name: Run the gateway
""")


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


def start_playbook(root: Path, play: str = PLAYBOOK, **variables: object) -> subprocess.Popen:
    """Start `play` on `root` as a host without systemd."""
    path = root.parent / "gateway.yml"
    path.write_text(play)
    extra = {"vmesh_root": str(root), "vmesh_service_manager": "process",
             "vmesh_manage_user": False, "vmesh_discovery_backend": "consul",
             "vmesh_gateway_enabled": True, "vmesh_gateway_datacenter": "dc1",
             "vmesh_gateway_listen": "127.0.0.1:0", "vmesh_gateway_wan_address": "198.18.0.5",
             "vmesh_gateway_ready_timeout_s": 30, "ansible_python_interpreter": sys.executable,
             **variables}
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path.home()),
           "ANSIBLE_ROLES_PATH": str(REPO / "ansible/roles"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.Popen([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             "-e", json.dumps(extra), str(path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(run: subprocess.Popen) -> str:
    """The output of a play started by `start_playbook`, once it ended."""
    output, _ = run.communicate(timeout=240)
    return f"rc={run.returncode}\n{output}"


def playbook(root: Path, play: str = PLAYBOOK, **variables: object) -> str:
    """Run `play` on `root` as a host without systemd: its output; asserts nothing."""
    return finished(start_playbook(root, play, **variables))


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


def test_a_bad_gateway_value_fails_the_play_and_keeps_the_running_gateway(
    host: Path, agent: FakeConsul
) -> None:
    pid = gateway_started(host, agent)
    config = (host / "etc/vmesh/gateway.toml").read_text()

    bad = playbook(host, vmesh_gateway_drain="soon")
    assert not bad.startswith("rc=0\n")
    assert "drain: invalid duration 'soon'" in bad, bad
    assert (host / "etc/vmesh/gateway.toml").read_text() == config
    assert gateway_pid(host) == pid and Path(f"/proc/{pid}").exists()


def test_the_gateway_cap_set_in_the_inventory_is_in_force(host: Path, agent: FakeConsul) -> None:
    output = playbook(host, vmesh_gateway_max_connections=500)
    assert output.startswith("rc=0\n"), output
    assert "[max_connections]\ngateway = 500\n" in (host / "etc/vmesh/gateway.toml").read_text()
    socket_path = host / "run/vmesh/vmesh-gateway.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)),
                      base_url="http://admin", timeout=10) as admin:
        assert admin.get("/v1/stats").json()["listeners"]["gateway"]["max"] == 500

    bad = playbook(host, vmesh_gateway_max_connections=0)
    assert not bad.startswith("rc=0\n")
    assert "max_connections.gateway: Input should be greater than or equal to 1" in bad, bad


def gateway_pid(root: Path) -> int:
    return int((root / "run/vmesh/gateway.pid").read_text())


def gateway_started(root: Path, agent: FakeConsul) -> int:
    """Run the role with the gateway enabled until it passes its check: its PID."""
    output = playbook(root)
    assert output.startswith("rc=0\n"), output
    wait_until(lambda: agent.health_entries("vmesh-gateway", passing=True), within=15,
               what="the gateway passing its agent's TCP check")
    return gateway_pid(root)


def test_a_gateway_turned_off_is_stopped_deregistered_and_removed(
    host: Path, agent: FakeConsul
) -> None:
    pid = gateway_started(host, agent)

    consul = f"http://127.0.0.1:{agent.port}"
    off = playbook(host, vmesh_gateway_enabled=False, vmesh_discovery_consul_url=consul)
    assert off.startswith("rc=0\n"), off
    assert not Path(f"/proc/{pid}").exists()
    assert agent.health_entries("vmesh-gateway", passing=False) == []
    assert not (host / "etc/vmesh/gateway.toml").exists()
    assert not (host / "run/vmesh/gateway.pid").exists()

    again = playbook(host, vmesh_gateway_enabled=False, vmesh_discovery_consul_url=consul)
    assert again.startswith("rc=0\n") and "changed=0" in again, again


def test_a_gateway_restarted_by_an_upgrade_leaves_rotation_and_drains_first(
    host: Path, agent: FakeConsul
) -> None:
    pid = gateway_started(host, agent)
    [entry] = agent.health_entries("vmesh-gateway", passing=True)
    port = entry["Service"]["Port"]
    with echo_server() as echo:
        agent.register({"ID": "echo-1", "Name": "echo", "Address": "127.0.0.1", "Port": echo,
                        "Meta": {"td": TRUST_DOMAIN}})
        hello = client_hello(f"echo.dc1.{TRUST_DOMAIN}")
        carried = socket.create_connection(("127.0.0.1", port), timeout=10)
        carried.sendall(hello)
        assert carried.recv(len(hello), socket.MSG_WAITALL) == hello  # carried to echo

        run = start_playbook(host, RESTART, vmesh_gateway_drain_wait_s=60)
        try:
            wait_until(lambda: not agent.health_entries("vmesh-gateway", passing=True),
                       within=60, what="the gateway leaving its site's Consul")
            with socket.socket(socket.AF_UNIX) as probe:  # out of rotation, still carrying
                probe.connect(str(host / "run/vmesh/vmesh-gateway.sock"))
                probe.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b"".join(iter(lambda: probe.recv(4096), b""))  # to the close
                assert b"left discovery" in answer
            carried.sendall(b"still there")
            assert carried.recv(11, socket.MSG_WAITALL) == b"still there"
            assert run.poll() is None and gateway_pid(host) == pid  # waiting for the drain
        finally:
            carried.close()
        output = finished(run)
    assert output.startswith("rc=0\n"), output
    assert gateway_pid(host) != pid and not Path(f"/proc/{pid}").exists()
    wait_until(lambda: agent.health_entries("vmesh-gateway", passing=True), within=15,
               what="the restarted gateway registered and passing again")
