"""Hosts that run vmesh processes: namespaces on bridges, torn down even on failure.

Each host is a namespace `vm-<random>-<i>` with loopback up and one veth into a
bridge in the root namespace per network it is on (`eth0`, `eth1`, ...), an
address in 198.18.0.0/15 on each (one /24 per network) and a multicast route on
the first, so mDNS crosses the bridge as it would cross a LAN. Networks do not
route to each other: a host reaches the hosts of its own networks only. Every
host has its own VMESH_ROOT. Commands run in a host with `ip netns exec` (which
execs, so the PID we get is the command's own and we stop it by that PID).
"""

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import require_root
from tests.support import require_tool

SUBNET_PREFIX = "198.18"  # RFC 2544 benchmarking range: never routed, ours to use in tests


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Host:
    """One namespace: its name, its address on the bridge, its own VMESH_ROOT."""

    namespace: str
    address: str  # on its first network
    veth: str  # the root-namespace end of its first link; down = the host is cut off
    root: Path
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)  # on each of its networks, in order
    veths: list[str] = field(default_factory=list)  # root-namespace ends of all its links

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "VMESH_ROOT": str(self.root)}

    def command(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def run(self, args: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `args` in this host and wait for it."""
        return subprocess.run(self.command(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=_REPO)

    def popen(self, args: Sequence[str]) -> subprocess.Popen[str]:
        """Start `args` in this host; it is stopped by PID when the hosts are torn down."""
        proc = subprocess.Popen(self.command(args), env=self.env, cwd=_REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc

    def adopt(self, proc: subprocess.Popen[str]) -> None:
        """Stop `proc` (started here by a helper) with the host's other processes."""
        self.processes.append(proc)

    def cut(self) -> None:
        """Take the host's link down, as a pulled cable would."""
        _ip("link", "set", self.veth, "down")

    def stop_processes(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


_REPO = Path(__file__).resolve().parents[2]


@contextmanager
def hosts(count: int, workdir: Path) -> Iterator[list[Host]]:
    """`count` hosts on one fresh bridge; processes, links, bridge and namespaces go at the end."""
    with networks([[0]] * count, workdir) as made:
        yield made


@contextmanager
def networks(layout: Sequence[Sequence[int]], workdir: Path) -> Iterator[list[Host]]:
    """A host per item of `layout`, which lists the networks (0, 1, ...: a fresh bridge and
    /24 each) the host has a leg in; its first is its `address`. Processes, links, bridges and
    namespaces go at the end."""
    require_root()
    require_tool("ip")
    tag = secrets.token_hex(3)
    first = secrets.randbelow(256)
    count = max(number for legs in layout for number in legs) + 1
    bridges = [f"vmb-{tag}-{number}" for number in range(count)]
    made: list[Host] = []
    made_bridges: list[str] = []
    try:
        for bridge in bridges:
            _ip("link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
            made_bridges.append(bridge)
            _ip("link", "set", bridge, "up")
        for index, legs in enumerate(layout, start=1):
            host = Host(f"vm-{tag}-{index}", "", "", workdir / f"host{index}")
            host.root.mkdir(parents=True)
            _ip("netns", "add", host.namespace)
            made.append(host)
            inside = ("-n", host.namespace)
            _ip(*inside, "link", "set", "lo", "up")
            for leg, number in enumerate(legs):
                address = f"{SUBNET_PREFIX}.{(first + number) % 256}.{index}"
                outside, inner = f"vm{tag}h{index}n{number}", f"vm{tag}p{index}n{number}"
                _ip("link", "add", outside, "type", "veth", "peer", "name", inner)
                host.veths.append(outside)
                _ip("link", "set", inner, "netns", host.namespace, "name", f"eth{leg}")
                _ip("link", "set", outside, "master", bridges[number], "up")
                _ip(*inside, "addr", "add", f"{address}/24", "dev", f"eth{leg}")
                _ip(*inside, "link", "set", f"eth{leg}", "up")
                host.addresses.append(address)
            host.address, host.veth = host.addresses[0], host.veths[0]
            _ip(*inside, "route", "add", "224.0.0.0/4", "dev", "eth0")
        yield made
    finally:
        for host in made:
            host.stop_processes()
        for host in made:
            for veth in host.veths:
                subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=10)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=10)
        for bridge in made_bridges:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=10)
