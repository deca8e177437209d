"""Every mesh hop, pooled HTTP connections and opaque tunnels alike, carries TCP keep-alive
probes at both ends, as `ss` shows: a peer host that vanishes without a FIN or RST is found
out, and its connections closed, instead of being waited on for ever."""

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.integration.processes import start_backend
from tests.support import free_port, require_tool


def timers(port: int) -> list[str]:
    """The timer column `ss` shows for each established TCP connection to or from `port`
    (while a segment awaits its ACK, the retransmission timer shows instead: `on`)."""
    ss = require_tool("ss")
    lines = subprocess.run(
        [ss, "-tnoH", "state", "established", f"( sport = :{port} or dport = :{port} )"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    return [next((f for f in line.split() if f.startswith("timer:")), "no timer")
            for line in lines]


def probed(hop: list[str]) -> bool:
    """Both ends of one connection have their keep-alive timer running."""
    return len(hop) == 2 and all(t.startswith("timer:(keepalive,") for t in hop)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path)
    try:
        yield mesh
    finally:
        mesh.stop()


def test_a_pooled_connection_between_proxies_is_probed(mesh: Mesh) -> None:
    app = start_backend("web")
    try:
        web = mesh.start_proxy("web", app.port)
        front: ProxyProcess = mesh.start_proxy("front", 1)
        with httpx.Client(base_url=f"http://{front.outbound}", timeout=10) as client:
            assert client.get("/", headers={"Host": "web"}).status_code == 200
        # the connection stays in the outbound pool: one socket at each end of the hop
        wait_until(lambda: probed(timers(web.ports["inbound"])), what="keep-alive at both ends")
    finally:
        app.stop()


def test_an_opaque_tunnel_is_probed(mesh: Mesh) -> None:
    socat = require_tool("socat")
    echo_port = free_port()
    echo = subprocess.Popen(
        [socat, f"TCP-LISTEN:{echo_port},bind=127.0.0.1,reuseaddr,fork", "EXEC:cat"]
    )
    try:
        echo_proxy = mesh.start_proxy("echo", echo_port)
        front = mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"'
        )
        with socket.create_connection(("127.0.0.1", front.ports["tcp:echo"]), timeout=10) as sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"  # the tunnel is up end to end
            wait_until(lambda: probed(timers(echo_proxy.ports["inbound"])),
                       what="keep-alive at both ends")
    finally:
        echo.terminate()
        echo.wait(timeout=10)
