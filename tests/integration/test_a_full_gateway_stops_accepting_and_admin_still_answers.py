"""A mesh gateway's listener holds at most its cap of connections (gateway.toml's
`[max_connections] gateway`), as a proxy's listeners do: at the cap it accepts nothing and the
next connection waits in the kernel's backlog, unserved, until one of the open ones closes;
`/metrics` and `/v1/stats` on its admin socket show the listener full, and it logs it. By
default the cap is a share of the open-file limit, so a flood cannot take every descriptor
and the admin socket still answers. A bad cap is refused at load with file and line."""

import contextlib
import select
import socket
import subprocess
import sys
from pathlib import Path

from proxy.gateway import ALERT_UNRECOGNIZED_NAME, alert
from tests.fake_consul import FakeConsul
from tests.integration.mesh import (
    REPO,
    TRUST_DOMAIN,
    Mesh,
    ProxyProcess,
    start_gateway_process,
    wait_full,
    wait_until,
)
from tests.support import client_hello, require_tool

CAP = 3
ADMIN_CAP = 5
# descriptors the flooded gateway may open; the flood is more than that
NOFILE = 256
FLOOD = 400
# the held connections send no ClientHello: the gateway waits this long for one
GATEWAY_TOML = ('datacenter = "dc1"\nlisten = "127.0.0.1:0"\nwan_address = "127.0.0.1"\n'
                'hello_timeout = "10m"\n')


def start_gateway(agent: FakeConsul, tmp_path: Path, extra: str = "",
                  prefix: tuple[str, ...] = ()) -> ProxyProcess:
    """A gateway whose agent has made its one TCP check (which connects to the gateway's port
    as a caller does) and whose listener holds no connection."""
    once = agent.discovery_table().replace('consul_check_interval = "100ms"',
                                           'consul_check_interval = "24h"')
    assert once != agent.discovery_table()
    site = Mesh(tmp_path / "dc1", discovery=once)
    (site.root / "etc/vmesh/gateway.toml").write_text(GATEWAY_TOML + extra)
    gateway = start_gateway_process(site.env, prefix)
    try:
        wait_until(lambda: agent.health_entries("vmesh-gateway", passing=True),
                   what="the gateway passing its agent's TCP check")
        wait_until(lambda: gateway.metric("tcp_open_connections", listener="gateway") == 0,
                   what="the agent's check connection closed")
    except BaseException:
        gateway.stop()
        raise
    return gateway


def connect(gateway: ProxyProcess, sockets: contextlib.ExitStack) -> socket.socket:
    """A TCP connection to the gateway's port, closed with `sockets`."""
    return sockets.enter_context(socket.create_connection(("127.0.0.1", gateway.ports["port"]),
                                                          timeout=10))


def test_the_connection_over_the_cap_waits_until_one_closes(
    tmp_path: Path, agent: FakeConsul
) -> None:
    gateway = start_gateway(agent, tmp_path,
                            f"[max_connections]\ngateway = {CAP}\nadmin = {ADMIN_CAP}\n")
    try:
        assert gateway.metric("tcp_max_connections", listener="admin-socket") == ADMIN_CAP
        with contextlib.ExitStack() as sockets:
            held = [connect(gateway, sockets) for _ in range(CAP)]
            wait_full(gateway, "gateway", CAP)

            # a name of another site: a gateway that reads it answers with an alert at once
            waiting = connect(gateway, sockets)  # the kernel takes it into the backlog
            waiting.sendall(client_hello(f"api.west.{TRUST_DOMAIN}"))
            readable, _, _ = select.select([waiting], [], [], 1.0)
            assert readable == [], "the connection over the cap was served"
            assert gateway.metric("gateway_refused_total") == 0

            held[0].close()
            assert waiting.recv(100) == alert(ALERT_UNRECOGNIZED_NAME)
            assert gateway.metric("gateway_refused_total", reason="gateway.other_site") == 1

            waiting.close()
            wait_until(lambda: gateway.metric("tcp_listener_saturated", listener="gateway") == 0,
                       what="the gateway's listener below its cap")
            gateway.wait_for_log(lambda line: line.get("event") == "listener_resumed"
                                 and line.get("listener") == "gateway")
    finally:
        gateway.stop()


def test_admin_answers_while_a_flood_fills_the_gateway(
    tmp_path: Path, agent: FakeConsul
) -> None:
    prlimit = require_tool("prlimit")
    gateway = start_gateway(agent, tmp_path, prefix=(prlimit, f"--nofile={NOFILE}:{NOFILE}",
                                                     "--"))
    try:
        with contextlib.ExitStack() as sockets:
            for _ in range(FLOOD):
                connect(gateway, sockets)
            wait_until(lambda: gateway.listener("gateway")["saturated"],
                       what="the gateway's listener full")
            cap = gateway.listener("gateway")["max"]
            assert cap < NOFILE // 2  # a share of the gateway's descriptors, not all of them
            with gateway.admin() as admin:
                assert admin.get("/ready").json() == {"ready": True, "reason": "ready"}
            assert gateway.metric("tcp_open_connections", listener="gateway") == cap
            assert gateway.metric("tcp_listener_saturated", listener="gateway") == 1
    finally:
        gateway.stop()


def vmesh(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vm_mesh", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_cap_below_one_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GATEWAY_TOML + "[max_connections]\ngateway = 0\n")
    env = {"VMESH_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    reason = (f"vmesh: {path}:6: max_connections.gateway: "
              "Input should be greater than or equal to 1")
    for args in (("gateway", "run", "--config"), ("config", "check", "gateway")):
        result = vmesh(env, *args, str(path))
        assert (result.returncode, result.stderr.splitlines()[:1]) == (1, [reason]), args

    path.write_text(GATEWAY_TOML + f"[max_connections]\ngateway = {CAP}\n")
    result = vmesh(env, "config", "check", "gateway", str(path))
    assert (result.returncode, result.stdout) == (0, f"{path}: a valid gateway config\n")
