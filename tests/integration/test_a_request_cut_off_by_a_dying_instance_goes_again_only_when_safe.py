"""A request that goes out on a pooled connection whose instance then dies (its proxy killed
while the app holds the request) may have been executed already. The outbound proxy sends it
again, to another instance, only when it is safe to repeat (an idempotent method or an
`Idempotency-Key`, as Go's net/http and hyper decide); a POST gets its 502 and is executed
once."""

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.integration.mesh import Mesh, ProxyProcess


@dataclass
class Apps:
    """What the apps of the instances share: every request they read, and the first `/held`
    request of all, which its app holds unanswered until its connection closes. `/warm`
    requests are answered once one has reached each of two apps: two at once, each waiting
    for the other, are sure to reach both instances (P2C picks the one without a request
    outstanding), so each has a pooled connection after."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (app, method, path)
    held_by: list[str] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    warm: threading.Barrier = field(default_factory=lambda: threading.Barrier(2, timeout=10))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, app: str) -> bool:
        """True for the first `/held` request of all (`held` is set and names its app)."""
        with self.lock:
            if self.held_by:
                return False
            self.held_by.append(app)
        self.held.set()
        return True


class _AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, apps: Apps) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.apps = apps


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _AppServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        apps, name = self.server.apps, self.server.name
        with apps.lock:
            apps.seen.append((name, self.command, self.path))
        if self.path == "/warm":
            apps.warm.wait()
        elif self.path == "/held" and apps.hold(name):
            while self.rfile.read(65536):  # until the proxy's connection closes
                pass
            self.close_connection = True
            return
        self._read_body()
        body = f"{name} {self.path}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> None:
        """Read the request's body, as the proxy framed it: by length or chunked."""
        if self.headers.get("transfer-encoding") != "chunked":
            self.rfile.read(int(self.headers.get("content-length") or 0))
            return
        while size := int(self.rfile.readline().split(b";")[0], 16):
            self.rfile.read(size + 2)
        while self.rfile.readline() not in (b"\r\n", b""):  # trailers
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class TwoInstances:
    apps: Apps
    proxies: dict[str, ProxyProcess]  # app name -> the proxy in front of it
    front: ProxyProcess


@pytest.fixture
def two_instances(tmp_path: Path) -> Iterator[TwoInstances]:
    """Two instances of `web`, each an app behind its own proxy, and a `front` proxy."""
    apps = Apps()
    servers = [_AppServer(f"web-{n}", apps) for n in (1, 2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    mesh = Mesh(tmp_path)
    try:
        proxies = {
            server.name: mesh.start_proxy("web", server.server_address[1],
                                          instance_id=server.name)
            for server in servers
        }
        yield TwoInstances(apps, proxies, mesh.start_proxy("front", 1))
    finally:
        mesh.stop()
        for server in servers:
            server.shutdown()
            server.server_close()


def _cut_off(instances: TwoInstances, method: str, headers: dict[str, str]) -> httpx.Response:
    """Warm a pooled connection to each instance, send `method /held`, kill the proxy of the
    instance that holds it, and return what the caller gets."""
    base = f"http://{instances.front.outbound}"
    with ThreadPoolExecutor(2) as pool:
        warm_ups = list(pool.map(
            lambda _: httpx.get(f"{base}/warm", headers={"host": "web"}, timeout=30), range(2)
        ))
        assert [response.status_code for response in warm_ups] == [200, 200]
        warmed = {app for app, _, path in instances.apps.seen if path == "/warm"}
        assert warmed == {"web-1", "web-2"}
        body = b"order=1" if method == "POST" else None
        answer = pool.submit(httpx.request, method, f"{base}/held", content=body,
                             headers={"host": "web", **headers}, timeout=30)
        assert instances.apps.held.wait(10), "no app got the request"
        instances.proxies[instances.apps.held_by[0]].proc.kill()
        return answer.result(timeout=30)


def _reached(instances: TwoInstances, method: str) -> list[str]:
    return [app for app, seen, path in instances.apps.seen if (seen, path) == (method, "/held")]


def resends(instances: TwoInstances) -> float:
    """The front's count of requests sent again after their pooled connection was lost."""
    return instances.front.metric("request_resend_total", direction="outbound",
                                  reason="upstream.reset")


def test_a_post_is_not_sent_again_and_its_caller_gets_502(two_instances: TwoInstances) -> None:
    response = _cut_off(two_instances, "POST", {})
    assert (response.status_code, response.headers.get("vmesh-error")) == (502, "upstream.reset")
    assert " outbound: " in response.text  # the front's answer, not one the instance relayed
    assert _reached(two_instances, "POST") == two_instances.apps.held_by  # executed once
    assert resends(two_instances) == 0


@pytest.mark.parametrize(("method", "headers"), [
    ("GET", {}),
    ("POST", {"idempotency-key": "order-1"}),
])
def test_a_request_safe_to_repeat_is_answered_by_the_other_instance(
    two_instances: TwoInstances, method: str, headers: dict[str, str]
) -> None:
    response = _cut_off(two_instances, method, headers)
    (dead,) = two_instances.apps.held_by
    other = ({"web-1", "web-2"} - {dead}).pop()
    assert (response.status_code, response.text) == (200, f"{other} /held")
    assert _reached(two_instances, method) == [dead, other]
    assert resends(two_instances) == 1  # what the operator sees of it
