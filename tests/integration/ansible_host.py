"""This machine as one host of an Ansible inventory (the CA host, running a service), for
tests that run the real ansible-playbook on the roles of `ansible/` without SSH: a VMESH_ROOT
of its own whose `vmesh` runs this tree, processes supervised by start-stop-daemon (the path
of hosts without systemd), static discovery and loopback ports only."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.playbooks import PlaybookRun
from tests.integration.mesh import REPO, wait_until
from tests.support import free_ports

BIN = Path(sys.executable).parent
SITE_PLAY = """\
- name: Run the CA and the services on this host, as site.yml does
  hosts: vmesh_ca
  gather_facts: false
  tasks:
    - name: Decide how vmesh processes run here
      ansible.builtin.include_role: {name: vmesh, tasks_from: facts, public: true}
    - name: Write mesh.toml
      ansible.builtin.include_role: {name: vmesh, tasks_from: config}
    - name: Run the identity service
      ansible.builtin.include_role: {name: vmesh_identity}
    - name: Run the services
      ansible.builtin.include_role: {name: vmesh_proxy}
"""

class LocalHost:
    """A VMESH_ROOT under `workdir` and the inventory variables that deploy service `api`
    (the test backend as its app) and a cert-helper for `scraper` there."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "host"
        for directory in ("etc/vmesh/services", "run/vmesh", "var/log/vmesh", "var/lib/vmesh",
                          "opt/vmesh/venv/bin"):
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        vmesh = self.root / "opt/vmesh/venv/bin/vmesh"
        vmesh.write_text(f"#!/bin/sh\ncd {REPO}\nexec {sys.executable} -m vm_mesh \"$@\"\n")
        vmesh.chmod(0o755)
        (self.root / "etc/vmesh/endpoints.toml").write_text("")
        identity, app, inbound, outbound, admin = free_ports(5)
        self.inventory = workdir / "inventory.ini"
        self.inventory.write_text(f"[vmesh_ca]\nlocalhost ansible_connection=local "
                                  f"ansible_python_interpreter={sys.executable}\n")
        self.service = {
            "name": "api", "app_port": app,
            "command": [sys.executable, "-m", "tests.integration.backend",
                        "--name", "api@localhost", "--port", str(app)],
            "inbound": f"127.0.0.1:{inbound}", "outbound": f"127.0.0.1:{outbound}",
            "admin": f"127.0.0.1:{admin}", "advertise": "127.0.0.1", "drain_timeout": "2s"}
        self.variables: dict[str, object] = {
            "vmesh_root": str(self.root), "vmesh_service_manager": "process",
            "vmesh_manage_user": False, "vmesh_discovery_backend": "static",
            "vmesh_identity_listen": f"127.0.0.1:{identity}",
            "vmesh_identity_sans": ["127.0.0.1"],
            "vmesh_identity_url": f"https://127.0.0.1:{identity}",
            "vmesh_proxy_services": [self.service], "vmesh_proxy_ready_timeout_s": 30,
            "vmesh_stop_timeout_s": 10,
            # a cert-helper's leaf, as Prometheus' would be, kept by a helper run as root here
            "vmesh_proxy_cert_helpers": ["scraper"],
            "vmesh_proxy_cert_helper_users": {"scraper": "root"},
        }

    def playbook(self, *options: str, play: str = SITE_PLAY, **variables: object) -> PlaybookRun:
        """ansible-playbook of `play` on this host with the variables (and `variables` over
        them); asserts nothing."""
        path = self.workdir / "play.yml"
        path.write_text(play)
        env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path.home()),
               "ANSIBLE_ROLES_PATH": str(REPO / "ansible/roles"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(self.workdir / "ansible-tmp")}
        return PlaybookRun.of(subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.inventory),
             "-e", json.dumps({**self.variables, **variables}), *options, str(path)],
            env=env, capture_output=True, text=True, timeout=300))

    def stop(self) -> None:
        """Stop every process the roles started here, by its PID file's PID."""
        for pidfile in (self.root / "run/vmesh").glob("*.pid"):
            pid = int(pidfile.read_text())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), within=20,
                       what=f"{pidfile.name} exiting")
