"""This machine as the hosts of an Ansible inventory (the first the CA host; each runs a
service), for tests that run the real ansible-playbook on the roles of `ansible/` without SSH:
each host a VMESH_ROOT of its own whose `vmesh` runs this tree, processes supervised by
start-stop-daemon (the path of hosts without systemd), static discovery and loopback ports
only. The play they run is site.yml's own (its hosts, its roll-out keywords, its tasks) with
the installation of the wheel left out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from tests.e2e.playbooks import PlaybookRun
from tests.integration.mesh import REPO, wait_until
from tests.support import free_ports

BIN = Path(sys.executable).parent
# site.yml's roles, as they run on a host whose vmesh is already in place
INSTALLED_ROLES = [
    {"name": "Decide how vmesh processes run here",
     "ansible.builtin.include_role": {"name": "vmesh", "tasks_from": "facts", "public": True}},
    {"name": "Write mesh.toml",
     "ansible.builtin.include_role": {"name": "vmesh", "tasks_from": "config"}},
    {"name": "Run the identity service on the CA host",
     "when": "inventory_hostname in groups['vmesh_ca']",
     "ansible.builtin.include_role": {"name": "vmesh_identity"}},
    {"name": "Run the services",
     "ansible.builtin.include_role": {"name": "vmesh_proxy"}},
    {"name": "Run the site's mesh gateway where it is enabled",
     "ansible.builtin.include_role": {"name": "vmesh_gateway"}},
]


def site_play() -> str:
    """site.yml's play with its roles replaced by INSTALLED_ROLES (no facts gathered: the
    service manager is given)."""
    [play] = yaml.safe_load((REPO / "ansible/site.yml").read_text())
    play = {key: value for key, value in play.items() if key != "roles"}
    play["gather_facts"] = False
    play["tasks"] = INSTALLED_ROLES + play.get("tasks", [])
    return json.dumps([play], indent=1)


SITE_PLAY = site_play()


class LocalHost:
    """A VMESH_ROOT under `workdir` and the inventory variables that deploy service `api`
    (the test backend as its app) there, and, on the CA host, a cert-helper for `scraper`.
    `ca`: the CA host of the inventory, when it is another (its identity service serves this)."""

    def __init__(self, workdir: Path, name: str = "localhost", ca: LocalHost | None = None,
                 ) -> None:
        self.workdir = workdir
        self.name = name
        self.root = workdir / name
        for directory in ("etc/vmesh/services", "run/vmesh", "var/log/vmesh", "var/lib/vmesh",
                          "opt/vmesh/venv/bin"):
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        # the installed venv's two entry points the roles call, running this tree
        venv = self.root / "opt/vmesh/venv/bin"
        (venv / "vmesh").write_text(
            f"#!/bin/sh\ncd {REPO}\nexec {sys.executable} -m vm_mesh \"$@\"\n")
        (venv / "python").write_text(
            f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} \"$@\"\n")
        for entry_point in venv.iterdir():
            entry_point.chmod(0o755)
        (self.root / "etc/vmesh/endpoints.toml").write_text("")
        identity, app, inbound, outbound, admin = free_ports(5)
        if ca is not None:
            identity = ca.identity_port
        self.identity_port = identity
        # the same item on every host, as a fleet's group_vars give it: the apps share a port
        self.service: dict[str, object] = ca.service if ca is not None else {
            "name": "api", "app_port": app,
            "command": [sys.executable, "-m", "tests.integration.backend", "--name", "api",
                        "--port", str(app), "--reuse-port"],
            "drain_timeout": "2s"}
        self.variables: dict[str, object] = {
            "vmesh_root": str(self.root), "vmesh_service_manager": "process",
            "vmesh_manage_user": False, "vmesh_discovery_backend": "static",
            "vmesh_identity_listen": f"127.0.0.1:{identity}",
            "vmesh_identity_sans": ["127.0.0.1"],
            "vmesh_identity_url": f"https://127.0.0.1:{identity}",
            "vmesh_proxy_services": [self.service], "vmesh_proxy_ready_timeout_s": 30,
            "vmesh_proxy_inbound": f"127.0.0.1:{inbound}",
            "vmesh_proxy_outbound": f"127.0.0.1:{outbound}",
            "vmesh_proxy_admin": f"127.0.0.1:{admin}", "vmesh_proxy_advertise": "127.0.0.1",
            "vmesh_stop_timeout_s": 10,
            # a cert-helper's leaf, as Prometheus' would be, kept by a helper run as root here
            "vmesh_proxy_cert_helpers": ["scraper"] if ca is None else [],
            "vmesh_proxy_cert_helper_users": {"scraper": "root"},
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        }

    def playbook(self, *options: str, play: str | Path = SITE_PLAY,
                 **variables: object) -> PlaybookRun:
        """ansible-playbook of `play` (its text, or a playbook file) on this host alone, with
        `variables` over its own; asserts nothing."""
        return run_playbook([self], *options, play=play, **variables)

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


def run_playbook(hosts: Sequence[LocalHost], *options: str, play: str | Path = SITE_PLAY,
                 **variables: object) -> PlaybookRun:
    """ansible-playbook of `play` (its text, or a playbook file) on `hosts` (the first in
    group vmesh_ca, the others in vmesh_hosts), each with its variables, and `variables` over
    them all; asserts nothing."""
    workdir = hosts[0].workdir
    path = play if isinstance(play, Path) else workdir / "play.yml"
    if not isinstance(play, Path):
        path.write_text(play)
    groups = {"vmesh_ca": hosts[:1], "vmesh_hosts": hosts[1:]}
    inventory = workdir / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"children": {
        group: {"hosts": {host.name: host.variables for host in members}}
        for group, members in groups.items()}}}))
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path.home()),
           "ANSIBLE_ROLES_PATH": str(REPO / "ansible/roles"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp")}
    return PlaybookRun.of(subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", json.dumps(variables),
         *options, str(path)], env=env, capture_output=True, text=True, timeout=300))
