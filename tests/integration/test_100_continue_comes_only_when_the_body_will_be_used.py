"""A client that sends `Expect: 100-continue` and waits for the 100 before its body gets the 100
only once the request will be used: routed, an instance picked, authorized and its app there.
A request refused before that gets its final answer with no 100, so the body is never sent,
and the connection closes after it; a request let through is answered as any other."""

import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.integration.mesh import Mesh, ProxyProcess
from tests.integration.processes import Process, start_backend

POLICY = """\
kind: Authorization
service: locked
mode: enforce
default: deny
rules:
  - name: nobody
    from: ["spiffe://vmesh.local/svc/nobody"]
---
kind: HTTPRoute
name: half
service: half
rules:
  - retry: {on: [5xx], attempts: 1, backoff: {base: 1ms, max: 1ms}}
---
kind: ServicePolicy
service: half
circuit_breaker: {consecutive_failures: 10000}
"""


@dataclass
class RawClient:
    """HTTP/1.1 over a raw socket, one response at a time."""

    sock: socket.socket
    buffered: bytes = field(default=b"")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self) -> bytes:
        """The next response head, status line and headers (the proxy's answer may be a 100)."""
        while b"\r\n\r\n" not in self.buffered:
            data = self.sock.recv(65536)
            assert data, f"the proxy closed the connection; it had sent {self.buffered!r}"
            self.buffered += data
        head, _, self.buffered = self.buffered.partition(b"\r\n\r\n")
        return head

    def response(self) -> tuple[bytes, bytes]:
        """The next final response: its head and its (Content-Length) body."""
        head = self.head()
        length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length:"))
        while len(self.buffered) < length:
            data = self.sock.recv(65536)
            assert data, "the proxy closed the connection mid-body"
            self.buffered += data
        body, self.buffered = self.buffered[:length], self.buffered[length:]
        return head, body

    def closed(self) -> bool:
        """Whether the proxy closed the connection (and sent nothing more)."""
        try:
            return self.buffered == b"" and self.sock.recv(65536) == b""
        except ssl.SSLEOFError:  # closed without close_notify
            return True


@dataclass
class Site:
    front: ProxyProcess  # calls the others, as a local app's proxy
    proxies: dict[str, ProxyProcess]
    apps: dict[str, Process]
    peer: ssl.SSLContext  # a mesh identity, to call an inbound proxy directly

    def from_app(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.front.ports["outbound"]), timeout=10)

    def from_peer(self, service: str) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", self.proxies[service].ports["inbound"]),
                                       timeout=10)
        return self.peer.wrap_socket(raw)

    def requests_seen(self, service: str) -> int:
        port = self.apps[service].port
        return httpx.get(f"http://127.0.0.1:{port}/_stats").json()["requests"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    mesh = Mesh(tmp_path_factory.mktemp("mesh"))
    policy = mesh.root / "etc/vmesh/policy.d/policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(POLICY)
    apps = {name: start_backend(name) for name in ("web", "locked", "half")}
    with socket.create_server(("127.0.0.1", 0)) as closed:  # a port no app listens on
        gone_port = closed.getsockname()[1]
    try:
        proxies = {name: mesh.start_proxy(name, app.port) for name, app in apps.items()}
        # `half` has a second instance, whose app is gone; the first, drained (weight 0),
        # is picked only when that one was tried
        mesh.instances[-1]["weight"] = 0
        mesh.start_proxy("half", gone_port, instance_id="half-gone")
        proxies["gone"] = mesh.start_proxy("gone", gone_port)
        front = mesh.start_proxy("front", 1)
        identity = mesh.issue("peer")
        peer = ssl.create_default_context(cafile=str(identity / "bundle.pem"))
        peer.check_hostname = False
        peer.load_cert_chain(identity / "cert.pem", identity / "key.pem")
        peer.set_alpn_protocols(["http/1.1"])
        yield Site(front, proxies, apps, peer)
    finally:
        mesh.stop()
        for app in apps.values():
            app.stop()


def _expecting(host: str, size: int) -> bytes:
    return (f"PUT /upload HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()


@pytest.mark.parametrize("size", [5, 300_000])  # kept for retries, and streamed
def test_a_request_let_through_gets_its_100_then_its_answer(site: Site, size: int) -> None:
    with site.from_app() as sock:
        client = RawClient(sock)
        client.send(_expecting("web", size))
        assert client.head() == b"HTTP/1.1 100 Continue"
        client.send(b"x" * size)
        head, body = client.response()
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert json.loads(body)["body_bytes"] == size
        client.send(b"GET /again HTTP/1.1\r\nHost: web\r\n\r\n")  # the connection goes on
        assert client.response()[0].startswith(b"HTTP/1.1 200 ")


def test_a_peer_s_request_let_through_gets_its_100_then_its_answer(site: Site) -> None:
    with site.from_peer("web") as tls:
        client = RawClient(tls)
        client.send(_expecting("web", 5))
        assert client.head() == b"HTTP/1.1 100 Continue"
        client.send(b"hello")
        head, body = client.response()
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["body_bytes"] == 5


REFUSED = {
    "no instance": ("nowhere", 503, "no_endpoints"),
    "denied": ("locked", 403, "authz.default_deny"),
    "app unreachable": ("gone", 502, "app.connect_failed"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_request_is_answered_without_a_100(site: Site, case: str) -> None:
    service, status, reason = REFUSED[case]
    seen = site.requests_seen("locked")
    with site.from_app() as sock:
        client = RawClient(sock)
        client.send(_expecting(service, 5))
        head, _ = client.response()  # the first thing it hears: no 100 before
        assert head.startswith(b"HTTP/1.1 %d " % status), head
        assert f"vmesh-error: {reason}".encode() in head
        assert b"connection: close" in head.lower()
        assert client.closed()  # the body, if it came after all, would not be read
    assert site.requests_seen("locked") == seen


@pytest.mark.parametrize("case", ["denied", "app unreachable"])
def test_a_peer_s_refused_request_is_answered_without_a_100(site: Site, case: str) -> None:
    service, status, reason = REFUSED[case]
    with site.from_peer(service) as tls:
        client = RawClient(tls)
        client.send(_expecting(service, 5))
        head, _ = client.response()
        assert head.startswith(b"HTTP/1.1 %d " % status), head
        assert f"vmesh-error: {reason}".encode() in head
        assert client.closed()


def test_a_retry_after_an_answer_without_100_asks_again(site: Site) -> None:
    retried = site.front.metric("route_retry_total", dst_service="half")
    with site.from_app() as sock:
        client = RawClient(sock)
        client.send(_expecting("half", 5))  # to the instance whose app is gone: a 502, retried
        assert client.head() == b"HTTP/1.1 100 Continue"  # from the other instance's proxy
        client.send(b"hello")
        head, body = client.response()
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["body_bytes"] == 5
    assert site.front.metric("route_retry_total", dst_service="half") == retried + 1
