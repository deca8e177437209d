"""Hostile or broken HTTP through real proxies, from a peer over mTLS and from a local app, to
a raw app that answers exactly the bytes a test asks for. Whatever one side sends stays in its
own exchange: bytes an app sends past the response it owed never reach the next caller, a
header spelled with underscores cannot pose as the caller's identity, an early answer is
relayed instead of a 502, and a whole request before bad bytes is still served."""

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.mesh import Mesh, ProxyProcess


@dataclass
class RawApp:
    """An app on a real socket: `GET /raw/<hex>` is answered with exactly those bytes (the
    connection kept), `POST /early` with a 413 and a close when 1 MiB of its body is read, and any
    other request with a 200 naming its path. Every request head it read is in `heads`."""

    listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    heads: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        buffered = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffered:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                self.heads.append(head)
                path = head.split(b" ")[1]
                if path == b"/early":
                    conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n"
                                 b"Connection: close\r\n\r\nbig")
                    conn.shutdown(socket.SHUT_WR)
                    _linger(conn)
                    return
                if path.startswith(b"/raw/"):
                    conn.sendall(bytes.fromhex(path[5:].decode()))
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(path), path))


def _linger(conn: socket.socket, limit: int = 1 << 20) -> None:
    """Read and drop up to `limit` bytes of a body not wanted, then go (and the close resets
    the connection, the rest unread), as a server's lingering close does."""
    taken = 0
    while taken < limit and (data := conn.recv(65536)):
        taken += len(data)


@dataclass
class Hostile:
    app: RawApp
    proxy: ProxyProcess  # the raw app's proxy
    front: ProxyProcess  # a local app's proxy, calling `raw`
    peer: ssl.SSLContext  # a mesh identity of its own, to call `raw`'s inbound port directly

    def from_peer(self, data: bytes, read_for: float = 1.0) -> bytes:
        """Send `data` to the raw app's proxy as a peer proxy would; all it answers in
        `read_for` seconds, or until it closes."""
        with socket.create_connection(("127.0.0.1", self.proxy.ports["inbound"]), timeout=10) \
                as raw, self.peer.wrap_socket(raw) as tls:
            return _exchange(tls, data, read_for)

    def from_app(self, data: bytes, read_for: float = 1.0) -> bytes:
        """Send `data` to the front proxy's outbound listener, as a local app would."""
        with socket.create_connection(("127.0.0.1", int(self.front.outbound.rsplit(":")[1])),
                                      timeout=10) as sock:
            return _exchange(sock, data, read_for)


def _exchange(sock: socket.socket, data: bytes, read_for: float) -> bytes:
    sock.sendall(data)
    sock.settimeout(read_for)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except TimeoutError:
        pass
    return answer


def _raw(response: bytes) -> bytes:
    """A request that makes the raw app answer `response`, and the connection end after."""
    target = b"/raw/" + response.hex().encode()
    return b"GET " + target + b" HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n\r\n"


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Hostile]:
    app = RawApp()
    threading.Thread(target=app.serve, daemon=True).start()
    mesh = Mesh(tmp_path)
    try:
        proxy = mesh.start_proxy("raw", app.port)
        front = mesh.start_proxy("front", 1)
        identity = mesh.issue("peer")
        peer = ssl.create_default_context(cafile=str(identity / "bundle.pem"))
        peer.check_hostname = False  # a proxy's name is its SPIFFE ID
        peer.load_cert_chain(identity / "cert.pem", identity / "key.pem")
        peer.set_alpn_protocols(["http/1.1"])
        yield Hostile(app, proxy, front, peer)
    finally:
        mesh.stop()
        app.listener.close()


def test_bytes_an_app_sends_past_its_response_never_reach_the_next_caller(
    hostile: Hostile,
) -> None:
    # the app says 5 bytes, then sends the start of a response nobody asked for
    first = hostile.from_peer(_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                                   b"helloHTTP/1.1 403 Forbidden\r\nX-Junk: "))
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"hello")
    # another caller, another connection: the proxy must not hand it that app connection
    second = hostile.from_app(b"GET /victim HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n\r\n")
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"/victim"), second


def test_a_header_spelled_with_underscores_cannot_pose_as_the_callers_identity(
    hostile: Hostile,
) -> None:
    answer = hostile.from_peer(b"GET /who HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n"
                               b"vmesh_client_id: spiffe://vmesh.local/svc/admin\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    [head] = [h for h in hostile.app.heads if h.startswith(b"GET /who ")]
    lines = head.lower().split(b"\r\n")
    assert b"vmesh-client-id: spiffe://vmesh.local/svc/peer" in lines
    assert not [line for line in lines if line.startswith(b"vmesh_client_id")]


def test_a_malformed_status_line_from_the_app_is_a_502(hostile: Hostile) -> None:
    answer = hostile.from_peer(_raw(b"HTTP/1.1 099 X\r\nContent-Length: 2\r\n\r\nok"))
    assert answer.startswith(b"HTTP/1.1 502 ") and b"vmesh-error: upstream.bad_response" in answer


def test_an_answer_the_app_gives_before_the_body_is_all_sent_is_relayed(
    hostile: Hostile,
) -> None:
    size = 30_000_000  # more than the sockets between the two hold: the app's close cuts it
    with socket.create_connection(("127.0.0.1", hostile.proxy.ports["inbound"]), timeout=30) \
            as raw, hostile.peer.wrap_socket(raw) as tls:
        tls.sendall(b"POST /early HTTP/1.1\r\nHost: raw\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = bytes(65536)
        for _ in range(size // len(chunk)):
            tls.sendall(chunk)
        tls.sendall(bytes(size % len(chunk)))
        answer = tls.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer


def test_a_whole_request_before_bad_bytes_is_served_first(hostile: Hostile) -> None:
    answer = hostile.from_app(b"GET /a HTTP/1.1\r\nHost: raw\r\n\r\n\x00garbage\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\n\r\n/a" in answer
    assert b"HTTP/1.1 400 " in answer  # then the garbage is refused and the connection ends


def test_a_request_reaches_the_app_with_its_host_or_not_at_all(hostile: Hostile) -> None:
    no_host = hostile.from_peer(b"GET /nohost HTTP/1.0\r\n\r\n")
    assert no_host.startswith(b"HTTP/1.1 400 ") and b"vmesh-error: http1.missing_host" in no_host
    named = hostile.from_peer(b"GET /named HTTP/1.1\r\nHost: raw\r\nConnection: host, close\r\n"
                              b"\r\n")
    assert named.startswith(b"HTTP/1.1 200 ")
    assert [h for h in hostile.app.heads if h.startswith(b"GET /nohost ")] == []
    [head] = [h for h in hostile.app.heads if h.startswith(b"GET /named ")]
    assert b"\r\nhost: raw" in head.lower()


def test_a_204_leaves_without_a_content_length(hostile: Hostile) -> None:
    answer = hostile.from_peer(_raw(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 204 ") and b"content-length" not in answer.lower()
