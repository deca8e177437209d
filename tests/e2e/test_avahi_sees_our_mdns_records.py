"""A real mDNS peer — avahi-daemon, asked with `avahi-browse -rpt _vmesh._tcp` — sees what a vmesh
proxy announces with python-zeroconf, TXT keys and all, and sees it go after the goodbye.

Two hosts are network namespaces joined by a veth link. Host B runs its own
D-Bus system bus and avahi-daemon (in a private mount namespace, so its
/run/avahi-daemon is its own); nothing on the machine's real buses is touched.
"""

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.netns import Host, linked_pair
from tests.support import require_tool

pytestmark = pytest.mark.e2e

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

AVAHI_CONFIG = """[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces={device}
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[publish]
disable-publishing=yes
"""

ANNOUNCER = textwrap.dedent("""
    import asyncio, sys
    from vm_mesh.discovery.base import Instance
    from vm_mesh.discovery.mdns import MdnsDiscovery

    async def main(service, address):
        discovery = MdnsDiscovery([address], trust_domain="vmesh.local")
        instance = Instance(service, service + "-1", address, 4143, admin_port=4191,
                            zone="rack-7", weight=40, version="1.2.3")
        await discovery.register(instance)
        print("registered", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        await discovery.deregister(instance)
        print("gone", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        await discovery.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    require_tool("ip")
    with linked_pair() as pair:
        yield pair


@pytest.fixture
def avahi(hosts: tuple[Host, Host], tmp_path: Path) -> Iterator[dict[str, str]]:
    """avahi-daemon on host B with its own system bus; yields the environment to reach it."""
    dbus_daemon = require_tool("dbus-daemon")
    avahi_daemon = require_tool("avahi-daemon")
    require_tool("unshare")
    _, peer = hosts
    bus_socket = tmp_path / "system_bus_socket"
    (tmp_path / "bus.conf").write_text(BUS_CONFIG.format(socket=bus_socket))
    (tmp_path / "avahi.conf").write_text(AVAHI_CONFIG.format(device=peer.device))
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus_socket}"}
    bus = subprocess.Popen([dbus_daemon, "--nofork", "--nopidfile",
                            f"--config-file={tmp_path / 'bus.conf'}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    daemon = None
    try:
        deadline = time.monotonic() + 10
        while not bus_socket.exists():
            assert bus.poll() is None, f"dbus-daemon exited: {bus.stderr.read()!r}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "dbus-daemon did not create its socket"
            time.sleep(0.05)
        # a private /run, so this avahi-daemon's pid file and socket are its own
        script = (f"mount -t tmpfs vmesh-test /run && mkdir /run/avahi-daemon && "
                  f"exec {avahi_daemon} -f {tmp_path / 'avahi.conf'} "
                  "--no-chroot --no-drop-root --no-rlimits")
        daemon = subprocess.Popen(peer.command("unshare", "-m", "--propagation", "private",
                                               "sh", "-c", script),
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        yield env
    finally:
        if daemon is not None:
            stop(daemon)
        stop(bus)


def browse(peer: Host, env: dict[str, str]) -> list[list[str]]:
    """Resolved `_vmesh._tcp` records as avahi-browse prints them (`=;iface;IPv4;name;...`)."""
    done = subprocess.run(peer.command("avahi-browse", "-rpt", "_vmesh._tcp"), env=env,
                          capture_output=True, text=True, timeout=30)
    return [line.split(";") for line in done.stdout.splitlines() if line.startswith("=")]


def browse_until(
    peer: Host, env: dict[str, str], condition: Callable[[list[list[str]]], object],
    within: float = 20.0,
) -> list[list[str]]:
    deadline = time.monotonic() + within
    while True:
        records = browse(peer, env)
        if condition(records):
            return records
        assert time.monotonic() < deadline, f"avahi-browse never showed it: {records}"
        time.sleep(0.2)


def test_avahi_browse_resolves_our_record_and_sees_the_goodbye(
    hosts: tuple[Host, Host], avahi: dict[str, str]
) -> None:
    require_tool("avahi-browse")
    announcer_host, peer = hosts
    service = f"api{secrets.token_hex(3)}"
    announcer = subprocess.Popen(
        announcer_host.command(sys.executable, "-c", ANNOUNCER, service, announcer_host.address),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert announcer.stdout is not None and announcer.stdin is not None
        assert announcer.stdout.readline().strip() == "registered"

        def ours(records: list[list[str]]) -> list[list[str]]:
            return [r for r in records if r[3] == f"{service}-1"]

        record = ours(browse_until(peer, avahi, ours))[0]
        # =;iface;proto;name;type;domain;host;address;port;txt
        assert record[4] == "_vmesh._tcp" and record[7] == announcer_host.address
        assert record[8] == "4143"
        txt = set(record[9].split(" "))
        for pair in (f"svc={service}", f"id={service}-1", "proto=http", "zone=rack-7",
                     "weight=40", "ver=1.2.3", "admin=4191", "td=vmesh.local"):
            assert f'"{pair}"' in txt, (pair, record[9])

        announcer.stdin.write("deregister\n")
        announcer.stdin.flush()
        assert announcer.stdout.readline().strip() == "gone"
        # goodbye packets: gone from avahi's cache well before the record's TTL (75 s / 120 min)
        browse_until(peer, avahi, lambda records: not ours(records), within=10)
    finally:
        if announcer.stdin is not None:
            announcer.stdin.close()
        stop(announcer)
