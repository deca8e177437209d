"""Several SSH-reachable hosts on one machine: network namespaces on a bridge, one sshd each.

Each host is a network namespace with one veth on a per-test bridge, an address in
198.18.0.0/15, a real OpenSSH server (its own sshd_config and host keys, public-key
login only, root by key) and its own filesystem prefix (`VMESH_ROOT`), because the
hosts share this machine's filesystem. The test process (the Ansible controller) sits
in the root namespace and reaches the hosts over the bridge, whose address is the hosts'
default gateway.

Everything is created under unique names with a random suffix and torn down in reverse
order, even when setup fails half way: processes stopped by PID, namespaces and the
bridge deleted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
# Every test network is a /24 picked at random inside the benchmarking range 198.18.0.0/15.
TEST_RANGE = ipaddress.ip_network("198.18.0.0/15")
SSH_READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SshHost:
    """One simulated host: where to reach it and where its filesystem starts."""

    name: str
    netns: str
    address: str
    vmesh_root: Path
    sshd_pid: int

    def run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host's network namespace (the test's own checks)."""
        # a host's programs import its own install, never the tree under test (PYTHONPATH)
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
               "VMESH_ROOT": str(self.vmesh_root)}
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            env=env, text=True, capture_output=True, check=False, **kwargs,
        )


@dataclass(frozen=True)
class SshCluster:
    """The hosts plus what a controller needs to reach them."""

    hosts: list[SshHost]
    client_key: Path
    known_hosts: Path
    workdir: Path
    gateway: str  # the bridge's address in the root namespace: where hosts reach the test

    def ssh_args(self) -> str:
        """SSH options for Ansible: our key, our known_hosts, strict host key checking."""
        return (
            f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "
            "-o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=5"
        )

    def write_inventory(self, path: Path, groups: dict[str, list[str]] | None = None,
                        host_vars: dict[str, dict[str, str]] | None = None) -> Path:
        """An INI inventory: every host in `all`, the given groups, `vmesh_root` per host."""
        lines = ["[all]"]
        for host in self.hosts:
            extra = " ".join(
                f"{key}={value}" for key, value in (host_vars or {}).get(host.name, {}).items()
            )
            lines.append(
                f"{host.name} ansible_host={host.address} vmesh_root={host.vmesh_root} {extra}"
                .rstrip()
            )
        for group, members in (groups or {}).items():
            lines += ["", f"[{group}]", *members]
        lines += [
            "",
            "[all:vars]",
            "ansible_user=root",
            f"ansible_ssh_private_key_file={self.client_key}",
            f"ansible_ssh_common_args='{self.ssh_args()}'",
            "ansible_python_interpreter=/usr/bin/python3",
            "",
        ]
        path.write_text("\n".join(lines))
        return path

    def ansible_env(self) -> dict[str, str]:
        """Environment for ansible/ansible-playbook: no user config, state kept in workdir."""
        state = self.workdir / "ansible-state"
        state.mkdir(exist_ok=True)
        config = state / "ansible.cfg"
        config.write_text("[defaults]\n")
        return {
            **os.environ,
            "ANSIBLE_CONFIG": str(config),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_LOCAL_TEMP": str(state / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(state / "cp"),
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_FORCE_COLOR": "False",
        }


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


def _pick_subnet() -> ipaddress.IPv4Network:
    """A /24 of the test range that no interface on this machine uses yet."""
    in_use = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True, text=True
    ).stdout
    candidates = list(TEST_RANGE.subnets(new_prefix=24))
    for _ in range(64):
        subnet = candidates[secrets.randbelow(len(candidates))]
        if f" {subnet.network_address + 1}/" not in in_use:
            return subnet
    raise RuntimeError("no free /24 left in 198.18.0.0/15 for the test network")


def _wait_for_port(address: str, port: int, pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise RuntimeError(f"sshd (pid {pid}) on {address} exited during startup")
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd on {address}:{port} did not accept connections in {timeout_s}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after a deadline; reaps our own children."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _stop_namespace_processes(netns: str) -> None:
    """Stop what playbooks started inside a namespace (by PID, as `ip netns pids` lists)."""
    listed = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    for pid in (int(p) for p in listed.stdout.split()):
        _stop(pid)


def _sshd_config(host_dir: Path, address: str, authorized_keys: Path) -> Path:
    config = host_dir / "sshd_config"
    config.write_text(
        "\n".join([
            f"ListenAddress {address}",
            "Port 22",
            f"HostKey {host_dir / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {authorized_keys}",
            f"PidFile {host_dir / 'sshd.pid'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            # The key files live in a pytest tmp directory, not in a home directory.
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            f"SetEnv VMESH_ROOT={host_dir / 'root'}",
            "LogLevel ERROR",
            "",
        ])
    )
    return config


@contextlib.contextmanager
def ssh_cluster(workdir: Path, count: int) -> Iterator[SshCluster]:
    """Start `count` hosts; yield them; remove everything on exit, also after a failure."""
    suffix = secrets.token_hex(3)
    subnet = _pick_subnet()
    gateway = subnet.network_address + 1
    bridge = f"vmb{suffix}"
    cleanups: list = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        cleanups.append(lambda: _ip("link", "del", bridge))
        _ip("addr", "add", f"{gateway}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")

        client_key = workdir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmesh-e2e",
                        "-f", str(client_key)], check=True)
        authorized_keys = workdir / "authorized_keys"
        authorized_keys.write_text(Path(f"{client_key}.pub").read_text())
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir

        hosts: list[SshHost] = []
        known_hosts: list[str] = []
        for index in range(count):
            name = f"host{index + 1}"
            netns = f"vmh{suffix}{index + 1}"
            address = str(gateway + 10 + index)
            _ip("netns", "add", netns)
            cleanups.append(lambda netns=netns: _ip("netns", "del", netns))
            cleanups.append(lambda netns=netns: _stop_namespace_processes(netns))
            outer, inner = f"vh{suffix}{index + 1}", f"vp{suffix}{index + 1}"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "master", bridge, "up")
            _ip("link", "set", inner, "netns", netns)
            _ip("-n", netns, "link", "set", inner, "name", "eth0")
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "route", "add", "default", "via", str(gateway))

            host_dir = workdir / name
            (host_dir / "root").mkdir(parents=True)
            host_key = host_dir / "ssh_host_ed25519_key"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                            "-f", str(host_key)], check=True)
            public = Path(f"{host_key}.pub").read_text().split()
            known_hosts.append(f"{address} {public[0]} {public[1]}")
            config = _sshd_config(host_dir, address, authorized_keys)
            sshd = subprocess.Popen(
                ["ip", "netns", "exec", netns, SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=(host_dir / "sshd.log").open("w"),
            )
            cleanups.append(lambda pid=sshd.pid: _stop(pid))
            _wait_for_port(address, 22, sshd.pid, SSH_READY_TIMEOUT_S)
            hosts.append(SshHost(name, netns, address, host_dir / "root", sshd.pid))

        known_hosts_file = workdir / "known_hosts"
        known_hosts_file.write_text("\n".join(known_hosts) + "\n")
        yield SshCluster(hosts, client_key, known_hosts_file, workdir, str(gateway))
    finally:
        errors = []
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except (OSError, subprocess.CalledProcessError) as exc:
                errors.append(exc)
        if errors:
            raise RuntimeError(f"test network teardown left something behind: {errors}")
