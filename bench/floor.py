"""The floor under vmesh: the least a pair of Python proxies can do for the benchmark's job.

    .venv/bin/python bench/floor.py {front,back} LISTEN_PORT UPSTREAM_PORT CERT_DIR [--tasks]

Two processes of this script make a 2-hop mTLS path like vmesh's: `front` takes plain
HTTP/1.1 and sends it over mTLS to `back`, which checks the client certificate against
the same CA and sends it on to the app. It uses what vmesh's data path uses (uvloop,
httptools, asyncio Protocols, pooled keep-alive upstream connections, the ssl module),
and nothing else: each message is relayed as it arrived, whole (no header rewriting,
routing, balancing, policy, metrics, tap or logs). `bench/compare.py` runs it beside
vmesh and HAProxy, so what vmesh costs above it is the work of vmesh's own layers, not
of Python's event loop, TLS or parser. A benchmark part, not a proxy: a message is
buffered whole, a request that arrives while another is in flight on the same
connection (pipelining) is not supported.

With `--tasks`, each client connection is served as vmesh serves it: a task per
connection awaits the next request and then the response, each a future that the
protocol's callback completes, where the plain floor relays in the callbacks
themselves. The difference between the two is what waking a task costs, twice a
message in each proxy, apart from any work of vmesh's layers.
"""

import argparse
import asyncio
import ssl
from collections import deque
from pathlib import Path

import httptools
import uvloop

from proxy.heap import keep_read_buffers_on_heap


class Upstream(asyncio.Protocol):
    """A pooled connection to the next hop; relays one response at a time."""

    def __init__(self, pool: deque["Upstream"]) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: list[bytes] = []
        self.client: Downstream | Reply | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        response, self.chunks = b"".join(self.chunks), []
        client, self.client = self.client, None
        if self.parser.should_keep_alive():  # read here: httptools forgets it after
            self.pool.append(self)
        elif self.transport is not None:
            self.transport.close()
        if client is not None:
            client.respond(response)

    def send(self, client: "Downstream | Reply", request: bytes) -> None:
        """Send `request` on this connection; its response goes to `client`."""
        self.client = client
        assert self.transport is not None
        self.transport.write(request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.client is not None:
            self.client.close()


class Downstream(asyncio.Protocol):
    """A client connection; each complete request goes to a pooled upstream connection."""

    def __init__(self, hop: "Hop") -> None:
        self.hop = hop
        self.parser = httptools.HttpRequestParser(self)
        self.chunks: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def on_message_complete(self) -> None:
        request, self.chunks = b"".join(self.chunks), []
        self.hop.send(self, request)

    def respond(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TaskDownstream(Downstream):
    """A client connection served by a task: it awaits each request, then its response."""

    def __init__(self, hop: "Hop") -> None:
        super().__init__(hop)
        self.requests: deque[bytes] = deque()
        self.closed = False
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.hop.keep(asyncio.get_running_loop().create_task(self.serve()))

    def on_message_complete(self) -> None:
        request, self.chunks = b"".join(self.chunks), []
        self.requests.append(request)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.requests:
                if self.closed:
                    return
                self.waiter = loop.create_future()
                await self.waiter
            reply = Reply(loop.create_future())
            self.hop.send(reply, self.requests.popleft())
            try:
                response = await reply.future
            except ConnectionResetError:
                self.close()
                return
            self.respond(response)


class Reply:
    """Where an upstream connection hands a response for a task to await."""

    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future

    def respond(self, response: bytes) -> None:
        self.future.set_result(response)

    def close(self) -> None:
        if not self.future.done():
            self.future.set_exception(ConnectionResetError("upstream closed"))


class Hop:
    """One proxy: where it sends requests, over TLS or not, and its pool of connections."""

    def __init__(self, port: int, tls: ssl.SSLContext | None) -> None:
        self.port = port
        self.tls = tls
        self.pool: deque[Upstream] = deque()
        self.tasks: set[asyncio.Task[None]] = set()  # opening connections, serving clients

    def send(self, client: Downstream | Reply, request: bytes) -> None:
        if self.pool:
            self.pool.pop().send(client, request)
        else:
            self.keep(asyncio.ensure_future(self._open_and_send(client, request)))

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a strong reference to `task` while it runs (the loop keeps only weak ones)."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _open_and_send(self, client: Downstream | Reply, request: bytes) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(
                lambda: Upstream(self.pool), "127.0.0.1", self.port, ssl=self.tls,
                server_hostname="back" if self.tls else None,
            )
        except OSError:
            client.close()
            return
        upstream.send(client, request)


def tls_context(purpose: ssl.Purpose, certs: Path) -> ssl.SSLContext:
    """Mutual TLS with the benchmark's certificates: present ours, require the peer's."""
    context = ssl.create_default_context(purpose, cafile=str(certs / "bundle.pem"))
    context.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve(role: str, listen_port: int, upstream_port: int, certs: Path,
                tasks: bool) -> None:
    front = role == "front"
    hop = Hop(upstream_port, tls_context(ssl.Purpose.SERVER_AUTH, certs) if front else None)
    client = TaskDownstream if tasks else Downstream
    server = await asyncio.get_running_loop().create_server(
        lambda: client(hop), "127.0.0.1", listen_port,
        ssl=None if front else tls_context(ssl.Purpose.CLIENT_AUTH, certs),
    )
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=("front", "back"))
    parser.add_argument("listen_port", type=int)
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("cert_dir", type=Path)
    parser.add_argument("--tasks", action="store_true",
                        help="serve each client connection with a task, as vmesh does")
    args = parser.parse_args()
    keep_read_buffers_on_heap()  # as the vmesh proxy does: the same malloc for both
    uvloop.run(serve(args.role, args.listen_port, args.upstream_port, args.cert_dir, args.tasks))


if __name__ == "__main__":
    main()
