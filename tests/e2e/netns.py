"""Network namespaces for e2e tests: unique names, addresses in 198.18.0.0/15, always removed."""

import contextlib
import ipaddress
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

# one /24 per test run inside 198.18.0.0/15, picked at random so parallel runs rarely meet;
# the namespaces are private anyway, the addresses only have to be in the range.
_NET = ipaddress.ip_network("198.18.0.0/15")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@dataclass(frozen=True)
class Host:
    """One namespace and its address on the link."""

    netns: str
    address: str
    device: str

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


@contextlib.contextmanager
def linked_pair() -> Iterator[tuple[Host, Host]]:
    """Two namespaces joined by a veth link (multicast on), torn down on exit."""
    tag = secrets.token_hex(3)
    subnet = secrets.randbelow(_NET.num_addresses // 256)
    base = _NET.network_address + subnet * 256
    names = (f"vm-{tag}-a", f"vm-{tag}-b")
    devices = (f"va{tag}", f"vb{tag}")
    created: list[str] = []
    try:
        for name in names:
            ip("netns", "add", name)
            created.append(name)
        ip("link", "add", devices[0], "netns", names[0], "type", "veth",
           "peer", "name", devices[1], "netns", names[1])
        hosts = []
        for number, (name, device) in enumerate(zip(names, devices, strict=True), start=1):
            address = str(base + number)
            ip("-n", name, "addr", "add", f"{address}/24", "dev", device)
            ip("-n", name, "link", "set", device, "up", "multicast", "on")
            ip("-n", name, "link", "set", "lo", "up")
            hosts.append(Host(name, address, device))
        yield hosts[0], hosts[1]
    finally:
        for name in created:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", name)  # takes its end of the veth pair, and so the pair, along
