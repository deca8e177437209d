"""An identity service that is not one: an HTTP or HTTPS server (a real socket in a thread)
that answers `GET /v1/bundle` and every POST with what a test chooses (a stranger's or an
expired CA, a flood, a page of another server, a stall) and records the POSTs it received."""

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from identity import castate
from identity.authority import Authority
from identity.service import server_context
from identity.store import Store


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: `body` with its content-length, or, with `drip_s`, without one and a byte
    at a time, `drip_s` apart (a service that stalls but never quite stops)."""

    body: bytes
    status: int = 200
    drip_s: float = 0.0


def tls_of(ca_dir: Path) -> ssl.SSLContext:
    """What the identity service of the CA in `ca_dir` presents on 127.0.0.1."""
    ca = castate.load(ca_dir)
    return server_context(Authority(ca, Store(ca.database), timedelta(hours=1)), ["127.0.0.1"])


@contextmanager
def hostile_service(bundle: Reply, post: Reply = Reply(b"", 500),
                    tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[bytes]]]:
    """Serve `bundle` to GET and `post` to POST, over TLS when `tls` is given; yields the URL
    and the POST bodies received."""
    received: list[bytes] = []
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(bundle)

        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
            self._reply(post)

        def _reply(self, reply: Reply) -> None:
            self.send_response(reply.status)
            if not reply.drip_s:
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            self.send_header("connection", "close")
            self.end_headers()
            for index in range(len(reply.body)):
                if stopping.wait(reply.drip_s):
                    return
                try:
                    self.wfile.write(reply.body[index:index + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", received
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
