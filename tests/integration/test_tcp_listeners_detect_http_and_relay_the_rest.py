"""A per-upstream TCP listener detects the protocol of each connection: HTTP is served by the
outbound HTTP stack (routes, timeouts, per-request tap and metrics) with the listener's service
as destination, a server-speaks-first protocol is relayed once detect_timeout passes, and a
listener port in the service's opaque_ports is relayed without detection."""

import contextlib
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.mesh import ProxyProcess, wait_until
from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401
from tests.support import free_port, require_tool

BANNER = b"220 banner-server ready\r\n"

POLICY = """\
kind: HTTPRoute
name: slow
service: slow
rules:
  - matches: [{path: {prefix: /}}]
    timeout: {request: 200ms}
---
kind: ServicePolicy
service: mysql
detect_timeout: 300ms
---
kind: ServicePolicy
service: smtp
opaque_ports: [{smtp_port}]
"""


class BannerServer:
    """A server that speaks first (as MySQL or SMTP do): a banner, then it echoes until EOF."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.sendall(BANNER)
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Front:
    proxy: ProxyProcess
    smtp_port: int


@pytest.fixture
def front(policy_mesh: PolicyMesh) -> Iterator[Front]:
    """`front` with TCP listeners for an HTTP `api`, a `slow` one, and two banner services."""
    smtp_port = free_port()
    policy_mesh.write_policy("tcp.yaml", POLICY.replace("{smtp_port}", str(smtp_port)))
    policy_mesh.service("api")
    policy_mesh.service("slow", delay=2.0)
    banner = BannerServer()
    try:
        policy_mesh.mesh.start_proxy("mysql", banner.port)
        policy_mesh.mesh.start_proxy("smtp", banner.port)
        listeners = [("api", 0), ("slow", 0), ("mysql", 0), ("smtp", smtp_port)]
        extra = "\n".join(
            f'[[tcp]]\nservice = "{service}"\nlisten = "127.0.0.1:{port}"'
            for service, port in listeners
        )
        yield Front(policy_mesh.mesh.start_proxy("front", 1, extra=extra), smtp_port)
    finally:
        banner.close()


def _curl(port: int, path: str) -> tuple[int, str]:
    """GET through a listener with curl (its Host header names the listener, not a service)."""
    out = subprocess.run(
        [require_tool("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code} %header{vmesh-error}",
         "--max-time", "20", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout
    status, _, error = out.partition(" ")
    return int(status), error


def _talk(port: int) -> tuple[bytes, bytes]:
    """Wait for the banner without sending a byte, then send a line and read its echo.

    The wait is bounded well below the default detect_timeout (10 s), so a policy's
    shorter one that is not applied fails here."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        banner = b""
        while len(banner) < len(BANNER):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {banner!r}"
            banner += chunk
        sock.sendall(b"hello\r\n")
        sock.shutdown(socket.SHUT_WR)
        echo = b""
        while chunk := sock.recv(65536):
            echo += chunk
    return banner, echo


def _opaque_logs(front: Front, service: str) -> list[dict]:
    return [line for line in list(front.proxy.logs)
            if line.get("msg") == "opaque TCP connection" and line.get("dst_service") == service]


def _opaque_log(front: Front, service: str, seen: int = 0) -> dict:
    """The opaque-connection log line of `service` after the first `seen` of them."""
    wait_until(lambda: len(_opaque_logs(front, service)) > seen, what=f"{service}'s log line")
    return _opaque_logs(front, service)[seen]


def test_http_through_a_listener_is_served_as_requests_to_its_service(
    policy_mesh: PolicyMesh, front: Front
) -> None:
    tap = policy_mesh.tap("front")
    front.proxy.wait_for_log(lambda line: line.get("msg") == "tap started")
    status, _ = _curl(front.proxy.ports["tcp:api"], "/items/42?x=1")
    assert status == 200
    wait_until(
        lambda: any(e["path"] == "/items/42?x=REDACTED" for e in tap),
        what="the request in front's tap",
    )
    event = next(e for e in tap if e["path"] == "/items/42?x=REDACTED")
    assert (event["direction"], event["method"], event["status"]) == ("outbound", "GET", 200)
    assert event["dst"]["service"] == "api"
    assert event["authority"] == f"127.0.0.1:{front.proxy.ports['tcp:api']}"
    metrics = policy_mesh.metrics("front")
    assert sample(metrics, "request_total", direction="outbound", dst_service="api") == 1
    assert sample(metrics, "tcp_open_total", dst_service="api") == 0


def test_a_route_timeout_applies_to_http_through_a_listener(
    policy_mesh: PolicyMesh, front: Front
) -> None:
    assert _curl(front.proxy.ports["tcp:slow"], "/anything") == (504, "timeout.request")


def test_a_server_that_speaks_first_gets_its_banner_through_after_detect_timeout(
    policy_mesh: PolicyMesh, front: Front
) -> None:
    banner, echo = _talk(front.proxy.ports["tcp:mysql"])
    assert (banner, echo) == (BANNER, b"hello\r\n")
    assert _opaque_log(front, "mysql")["detection"] == "timeout"
    wait_until(
        lambda: front.proxy.metric("tcp_read_bytes_total", dst_service="mysql") == len(b"hello\r\n")
        and front.proxy.metric("tcp_write_bytes_total", dst_service="mysql")
        == len(BANNER + b"hello\r\n"),
        what="the opaque connection in metrics",
    )


def test_a_listener_on_an_opaque_port_relays_without_detection(
    policy_mesh: PolicyMesh, front: Front
) -> None:
    assert front.proxy.ports["tcp:smtp"] == front.smtp_port
    banner, echo = _talk(front.smtp_port)
    assert (banner, echo) == (BANNER, b"hello\r\n")
    line = _opaque_log(front, "smtp")
    assert (line["detection"], line["port"]) == ("skipped", front.smtp_port)


def test_a_policy_reload_applies_to_new_connections(policy_mesh: PolicyMesh, front: Front) -> None:
    port = front.proxy.ports["tcp:mysql"]
    assert _talk(port) == (BANNER, b"hello\r\n")
    assert _opaque_log(front, "mysql")["detection"] == "timeout"

    loads = sum(line.get("event") == "policy_loaded" for line in list(front.proxy.logs))
    policy_mesh.write_policy(
        "tcp.yaml",
        POLICY.replace("{smtp_port}", str(front.smtp_port)).replace(
            "detect_timeout: 300ms", f"detect_timeout: 300ms\nopaque_ports: [{port}]"
        ),
    )
    wait_until(
        lambda: sum(line.get("event") == "policy_loaded" for line in list(front.proxy.logs))
        > loads,
        what="the new policy loaded",
    )
    assert _talk(port) == (BANNER, b"hello\r\n")
    assert _opaque_log(front, "mysql", seen=1)["detection"] == "skipped"


def test_a_client_that_speaks_first_in_another_protocol_is_relayed_at_once(
    policy_mesh: PolicyMesh, front: Front
) -> None:
    startup = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # a Postgres SSLRequest
    with socket.create_connection(("127.0.0.1", front.proxy.ports["tcp:mysql"]), timeout=5) as sock:
        sock.sendall(startup)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received == BANNER + startup
    assert _opaque_log(front, "mysql")["detection"] == "not_http"


def test_a_connection_still_in_detection_when_the_proxy_drains_is_answered(
    policy_mesh: PolicyMesh, front: Front
) -> None:
    """Its first bytes were sent before the drain: the client expects them answered."""
    with socket.create_connection(("127.0.0.1", front.proxy.ports["tcp:api"]), timeout=10) as sock:
        sock.sendall(b"GET /items/7 HT")  # not a whole request line yet: still in detection
        with front.proxy.admin() as admin:
            wait_until(lambda: admin.get("/v1/stats").json()["tcp_open"] == 1,
                       what="the connection open at front")
        front.proxy.proc.send_signal(signal.SIGTERM)
        front.proxy.wait_for_log(lambda line: line.get("msg") == "draining")
        sock.sendall(b"TP/1.1\r\nHost: api\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):  # the proxy closes after its response
            response += chunk
    head = response.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200 "), response
    assert b"\r\nconnection: close" in head
    assert front.proxy.proc.wait(timeout=30) == 0
