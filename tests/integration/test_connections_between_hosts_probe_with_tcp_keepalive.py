"""Every mesh hop, pooled HTTP connections and opaque tunnels alike, carries TCP keep-alive
probes at both ends, as `ss` shows: a peer host that vanishes without a FIN or RST is found
out, and its connections closed, instead of being waited on for ever. So does every
connection to the admin port: a log follower on a quiet log, whose host vanished, would
otherwise hold its stream (and its place among the proxy's streams) for ever."""

import socket
import ssl
import subprocess

import httpx

from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.integration.processes import start_backend
from tests.support import free_port, require_tool


def timers(port: int, *, accepted_only: bool = False) -> list[str]:
    """The timer column `ss` shows for each established TCP connection to or from `port`
    (only those accepted on it: `accepted_only`; while a segment awaits its ACK, the
    retransmission timer shows instead: `on`)."""
    ss = require_tool("ss")
    ends = f"sport = :{port}" if accepted_only else f"sport = :{port} or dport = :{port}"
    lines = subprocess.run(
        [ss, "-tnoH", "state", "established", f"( {ends} )"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    return [next((f for f in line.split() if f.startswith("timer:")), "no timer")
            for line in lines]


def probed(hop: list[str]) -> bool:
    """Both ends of one connection have their keep-alive timer running."""
    return len(hop) == 2 and all(t.startswith("timer:(keepalive,") for t in hop)


def probed_alone(accepted: list[str]) -> bool:
    """The one connection accepted has its keep-alive timer running."""
    return len(accepted) == 1 and accepted[0].startswith("timer:(keepalive,")


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


def test_an_admin_connection_is_probed(mesh: Mesh) -> None:
    api = mesh.start_proxy("api", 1)
    bundle = mesh.root / "var/lib/vmesh/api/bundle.pem"
    context = ssl.create_default_context(cafile=str(bundle))
    context.check_hostname = False  # a mesh leaf names a SPIFFE ID, not a host
    port = api.ports["admin"]
    with (socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
          context.wrap_socket(raw) as tls):
        tls.sendall(b"GET /ready HTTP/1.1\r\nHost: admin\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.1 200 ")  # and the connection stays open
        wait_until(lambda: probed_alone(timers(port, accepted_only=True)),
                   what="keep-alive on the proxy's end")
