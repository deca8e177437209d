"""A raw app behind a real proxy: it answers exactly the bytes a test asks for, so a test can
send any response, good or hostile, through the mesh and see what a client gets."""

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.mesh import Mesh, ProxyProcess


@dataclass
class RawApp:
    """An app on a real socket: `GET /raw/<hex>` is answered with exactly those bytes (the
    connection kept), `POST /early` with a 413 and, once 8 MiB more of its body are read, a
    close, and any other request with a 200 naming its path. Every request head it read is in
    `heads`."""

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


def _linger(conn: socket.socket, limit: int = 8 << 20) -> None:
    """Read and drop up to `limit` bytes of a body not wanted, then go (and the close resets
    the connection, the rest unread), as a server's lingering close does. The limit is more
    than loopback's socket buffers hold (up to 6 MiB received): a smaller one could be met
    by bytes already buffered, and the reset overtake the answer just sent."""
    taken = 0
    while taken < limit and (data := conn.recv(65536)):
        taken += len(data)


@dataclass
class RawMesh:
    app: RawApp
    proxy: ProxyProcess  # the raw app's proxy
    front: ProxyProcess  # a local app's proxy, calling `raw`
    peer: ssl.SSLContext  # a mesh identity of its own, to call `raw`'s inbound port directly

    def from_peer(self, data: bytes, read_for: float = 1.0) -> bytes:
        """Send `data` to the raw app's proxy as a peer proxy would; all it answers in
        `read_for` seconds, or until it closes."""
        with socket.create_connection(("127.0.0.1", self.proxy.ports["inbound"]), timeout=10) \
                as raw, self.peer.wrap_socket(raw) as tls:
            return exchange(tls, data, read_for)

    def from_app(self, data: bytes, read_for: float = 1.0) -> bytes:
        """Send `data` to the front proxy's outbound listener, as a local app would."""
        with socket.create_connection(("127.0.0.1", int(self.front.outbound.rsplit(":")[1])),
                                      timeout=10) as sock:
            return exchange(sock, data, read_for)


def exchange(sock: socket.socket, data: bytes, read_for: float) -> bytes:
    sock.sendall(data)
    sock.settimeout(read_for)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except TimeoutError:
        pass
    return answer


def answered_with(response: bytes) -> bytes:
    """A request that makes the raw app answer `response`, and the connection end after."""
    target = b"/raw/" + response.hex().encode()
    return b"GET " + target + b" HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n\r\n"


@contextlib.contextmanager
def raw_mesh(tmp_path: Path) -> Iterator[RawMesh]:
    """The raw app, its proxy `raw`, a proxy `front` whose app may call it, and a peer identity
    of its own."""
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
        yield RawMesh(app, proxy, front, peer)
    finally:
        mesh.stop()
        app.listener.close()
