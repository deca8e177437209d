"""The admin API of a proxy: health, metrics, stats, tap, endpoints, certs, config and logs.

Served on a local unix socket (no auth: file permissions guard it) and on a
TCP port over TLS, where the caller's SPIFFE ID decides what it may read. A
client certificate is optional on that port (as Linkerd's admin port serves
its probes openly): a caller without one gets only `/ready` and `/live`, so a
Consul agent or a load balancer can probe health; any identity of our trust
domain also gets metrics, stats, endpoints and certs; only operators get tap,
logs and config. A certificate that is sent must verify, or the handshake
fails. HTTP/1.1 is
parsed by h11; streams are NDJSON over chunked encoding. A HEAD request gets the
headers a GET would (a load balancer's `HEAD /ready` health check). A client that
reads nothing for the idle timeout while an answer or a stream waits for it is cut
off (`admin.write_timeout`), and a request must arrive whole within the request
timeout of its first byte (else 408 `admin.request_timeout`), so that a client
trickling one a byte at a time (slowloris) cannot hold a connection for long.
Connections to the TCP port carry TCP keep-alive probes, as the mesh's own do, so a
follower whose host vanished is found out even on a quiet log; and a proxy serves at
most `MAX_TAPS` taps and `MAX_LOG_FOLLOWS` log follows at once (503
`admin.too_many_streams` beyond). The port and the socket each hold at most
`max_connections` connections, counted apart from the data plane's listeners, so the API
answers while those are full; more wait in the backlog (`proxy.listener_limits`).
"""

import asyncio
import contextlib
import functools
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl

import h11

from identity import spiffe
from proxy.acceptor import Acceptor
from proxy.events import RequestEvent
from proxy.feed import BoundedFeed
from proxy.keepalive import keep_alive
from proxy.listener_limits import DEFAULT_ADMIN_MAX_CONNECTIONS
from proxy.observability import Observability
from proxy.stats import MAX_WINDOW_S
from proxy.tap import TapFilter, max_rate
from proxy.tls import PeerIdentityError, peer_identity
from vm_mesh.durations import parse_duration
from vm_mesh.paths import check_socket_path

log = logging.getLogger("vmesh.admin")

MAX_REQUEST_BODY = 16 * 1024
MAX_HEADER_BYTES = 16 * 1024
ALLOWED_METHODS = "GET, HEAD"
SHUTDOWN_GRACE_S = 2.0
HANDSHAKE_TIMEOUT_S = 10.0
UNIX_BACKLOG = 128
STREAM_FLUSH_S = 0.05  # tap and log streams write at most 20 times a second
MAX_LOGGED_PATH = 256  # characters of a request's path in a log line: a client chooses it
# Streams open at once per proxy, of each kind. Every tap subscriber is asked about every
# request the proxy carries (filter, rate limit) and every follower about every log line:
# more of them is more work on the data plane. 16 leave room for several operators, each
# with a console and a CLI twin or two, and keep that work bounded.
MAX_TAPS = 16
MAX_LOG_FOLLOWS = 16

T = TypeVar("T")

# one encoder for every NDJSON line: json.dumps with options builds a new one per call
_LINE_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))


def _line(item: dict) -> bytes:
    return _LINE_ENCODER.encode(item).encode() + b"\n"


class ProxyState(Protocol):
    """What the proxy tells its admin API about itself."""

    service: str

    def ready(self) -> tuple[bool, str]: ...
    def in_flight(self) -> int: ...
    def in_flight_inbound(self) -> int: ...
    def open_connections(self) -> int: ...
    def endpoints(self) -> dict[str, Any]: ...
    def certs(self) -> dict[str, Any]: ...
    def config(self) -> dict[str, Any]: ...


class AdminError(Exception):
    """A request the admin API answers with an error status and a JSON reason."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Request:
    path: str
    query: dict[str, str]
    caller: spiffe.SpiffeId | None  # None on the unix socket


# path -> (handler name, who may call it over TCP: anyone, a mesh identity, an operator)
_ROUTES: dict[str, tuple[str, str]] = {
    "/ready": ("_ready", "anyone"),
    "/live": ("_live", "anyone"),
    "/metrics": ("_metrics", "mesh"),
    "/v1/stats": ("_stats", "mesh"),
    "/v1/endpoints": ("_endpoints", "mesh"),
    "/v1/certs": ("_certs", "mesh"),
    "/v1/tap": ("_tap", "operator"),
    "/v1/logs": ("_logs", "operator"),
    "/v1/config": ("_config", "operator"),
}


class _HeadAnswered(Exception):
    """A HEAD request's answer is complete with its headers; the handler stops there."""


class _Exchange:
    """One HTTP/1.1 connection: h11 state plus the stream it writes to."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle_timeout: float,
        request_timeout: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.target = ""  # of the request being answered
        self.head = False  # the request is a HEAD: it gets the headers a GET would get
        self.deadline: float | None = None  # loop time by which the request must be whole

    @property
    def logged_path(self) -> str:
        """The path of the request being answered as log lines carry it: its first
        `MAX_LOGGED_PATH` characters (anyone who reaches the port may send 50 kB of one)."""
        path = self.target.partition("?")[0]
        return path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH] + "…"

    def begin(self, request: h11.Request) -> None:
        """Answer `request` next."""
        self.target = request.target.decode("ascii", "replace")
        self.head = request.method == b"HEAD"

    def next_cycle(self) -> None:
        """Wait for the connection's next request (keep-alive)."""
        self.conn.start_next_cycle()
        self.target, self.head, self.deadline = "", False, None
        if self.conn.trailing_data[0]:  # its first bytes came with the request before
            self._start_deadline()

    def _start_deadline(self) -> None:
        self.deadline = asyncio.get_running_loop().time() + self.request_timeout

    async def next_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        """The next request event; TimeoutError when the client sends nothing for
        `idle_timeout` seconds (an idle or stalled connection is not kept for ever), and
        AdminError 408 when the request is not whole `request_timeout` seconds after its
        first byte (however steadily it trickles in)."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            wait = self.idle_timeout
            if self.deadline is not None:
                wait = min(wait, self.deadline - asyncio.get_running_loop().time())
            try:
                async with asyncio.timeout(wait):
                    data = await self.reader.read(65536)
            except TimeoutError:
                if self.deadline is None or asyncio.get_running_loop().time() < self.deadline:
                    raise  # idle for `idle_timeout`: closed without an answer
                raise AdminError(
                    408,
                    "admin.request_timeout",
                    f"the request did not arrive whole within {self.request_timeout:g}s",
                ) from None
            if data and self.deadline is None:
                self._start_deadline()
            self.conn.receive_data(data)

    async def send(self, *events: h11.Event) -> None:
        """Write `events`; the answer to a HEAD ends with the response's headers, and
        `_HeadAnswered` stops the handler from writing a body."""
        for event in events:
            data = self.conn.send(event)
            if data:
                self.writer.write(data)
            if self.head and isinstance(event, h11.Response):
                self.conn.send(h11.EndOfMessage())  # writes nothing: h11 knows HEAD has no body
                await self._drain()
                raise _HeadAnswered
        await self._drain()

    async def _drain(self) -> None:
        """Wait while the client's buffer is full, `idle_timeout` at most: a client that reads
        nothing for that long (a stalled tap or log follower) is cut off, ConnectionResetError."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                await self.writer.drain()
        except TimeoutError:
            log.info("admin client stopped reading; connection cut",
                     extra={"reason": "admin.write_timeout",
                            "path": self.logged_path})
            self.writer.transport.abort()
            raise ConnectionResetError(
                f"the admin client read nothing for {self.idle_timeout:g}s"
            ) from None

    async def respond(
        self, status: int, body: bytes, content_type: str, *, close: bool = False
    ) -> None:
        """A whole answer; with `close`, the client is told the connection ends after it."""
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("date", formatdate(usegmt=True)),  # `vmesh check` reads clock skew from it
        ]
        if status == 405:
            headers.append(("allow", ALLOWED_METHODS))
        if close:
            headers.append(("connection", "close"))
        await self.send(
            h11.Response(status_code=status, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )

    async def json(self, status: int, body: Any, *, close: bool = False) -> None:
        await self.respond(
            status, json.dumps(body).encode() + b"\n", "application/json", close=close
        )


class AdminServer:
    """Serves one proxy's admin API on a unix socket and/or a TCP port with mTLS."""

    def __init__(
        self,
        state: ProxyState,
        observability: Observability,
        *,
        trust_domain: str,
        instance_id: str = "",
        version: str = "",
        idle_timeout: float = 60.0,
        request_timeout: float = 10.0,
        max_connections: int = DEFAULT_ADMIN_MAX_CONNECTIONS,
    ) -> None:
        self.state = state
        self.idle_timeout = idle_timeout  # for a client's next bytes, between and in requests
        self.request_timeout = request_timeout  # for a request, from its first byte to its end
        self.obs = observability
        self.trust_domain = trust_domain
        self.instance_id = instance_id
        self.version = version
        self.max_connections = max_connections  # of each listener: the port, the socket
        self._servers: list[Acceptor] = []
        self._tcp_servers: list[Acceptor] = []
        self._unix_sockets: list[tuple[Path, int]] = []  # (path, inode) to remove on close
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    async def serve_unix(self, path: Path) -> None:
        """Listen on a unix socket, readable and writable by owner and group only; UserError
        when its path is too long for one."""
        _clear_socket_path(check_socket_path(path))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(UNIX_BACKLOG)
        _restrict_socket(path)
        limit = self.obs.listeners.add("admin-socket", self.max_connections)
        self._servers.append(Acceptor("", 0, self._local_connection, self._connections, limit,
                                      sock=sock))
        self._unix_sockets.append((path, _inode(path)))

    async def serve_tcp(self, host: str, port: int, ssl_context: ssl.SSLContext,
                        sock: socket.socket | None = None) -> socket.socket:
        """Listen with TLS (`ssl_context` decides whether client certificates are required)
        on `host:port` or on the listening socket `sock`; returns the listening socket."""
        limit = self.obs.listeners.add("admin", self.max_connections)
        server = Acceptor(host, port, functools.partial(self._remote_connection, ssl_context),
                          self._connections, limit, sock=sock)
        self._servers.append(server)
        self._tcp_servers.append(server)
        return server.sockets[0]

    def stop_accepting_tcp(self) -> None:
        """Stop accepting on the TCP port, whose listening socket a successor accepts on
        too: every new connection (a health checker's probe of /ready) reaches the proxy
        that serves. Open connections and the unix socket go on until `close`."""
        for server in self._tcp_servers:
            server.close()

    async def close(self) -> None:
        """Stop listening; end open streams with their last chunk, then close every connection.

        Streams and idle keep-alive connections notice the shutdown at once; a
        connection still busy after `SHUTDOWN_GRACE_S` is cancelled.
        """
        self._closing.set()
        for server in self._servers:
            server.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=SHUTDOWN_GRACE_S)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        self._servers.clear()
        for path, inode in self._unix_sockets:
            _remove_socket(path, inode)
        self._unix_sockets.clear()

    async def _unless_closing(self, awaitable: Awaitable[T]) -> T | None:
        """The result of `awaitable`, or None as soon as the server starts closing."""
        if self._closing.is_set():
            return None
        work = asyncio.ensure_future(awaitable)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            done, _ = await asyncio.wait({work, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if work in done:
            return work.result()
        work.cancel()
        return None

    async def _local_connection(self, sock: socket.socket) -> None:
        """A connection to the unix socket."""
        streams = await _streams(sock)
        if streams is not None:
            await self._connection(*streams, remote=False)

    async def _remote_connection(self, ssl_context: ssl.SSLContext, sock: socket.socket) -> None:
        """A connection to the TCP port, over TLS, probed with TCP keep-alive as the mesh's own
        are: a stream's client whose host vanished (no FIN) on a quiet log or tap is found
        out."""
        with contextlib.suppress(OSError):  # a connection already reset: its reads will say so
            keep_alive(sock)
        streams = await _streams(sock, ssl_context)
        if streams is not None:
            await self._connection(*streams, remote=True)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, remote: bool
    ) -> None:
        exchange = _Exchange(reader, writer, self.idle_timeout, self.request_timeout)
        caller: spiffe.SpiffeId | None = None
        try:
            caller = _peer_identity(writer) if remote else None
            while True:
                event = await self._unless_closing(exchange.next_event())
                if not isinstance(event, h11.Request):
                    break
                exchange.begin(event)
                await self._read_body(exchange)
                with contextlib.suppress(_HeadAnswered):  # a HEAD's answer: the headers
                    await self._answer(exchange, event, caller, remote)
                if exchange.conn.our_state is not h11.DONE or self._closing.is_set():
                    break
                exchange.next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(h11.LocalProtocolError, ConnectionError, _HeadAnswered):
                await exchange.json(
                    exc.error_status_hint, {"error": "admin.bad_request", "detail": str(exc)}
                )
        except AdminError as error:  # a request too slow to arrive: it ends the connection
            with contextlib.suppress(h11.LocalProtocolError, ConnectionError, _HeadAnswered):
                await self._refuse(exchange, error, caller, close=True)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception as error:  # a bug of ours: logged here, never a task's unread error
            await self._failed(exchange, error)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _read_body(self, exchange: _Exchange) -> None:
        received = 0
        while True:
            event = await exchange.next_event()
            if isinstance(event, h11.EndOfMessage):
                return
            if isinstance(event, h11.Data):
                received += len(event.data)
                if received > MAX_REQUEST_BODY:
                    raise h11.RemoteProtocolError("request body too large", 413)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError

    async def _answer(
        self,
        exchange: _Exchange,
        request: h11.Request,
        caller: spiffe.SpiffeId | None,
        remote: bool,
    ) -> None:
        path, _, query = exchange.target.partition("?")
        try:
            route = _ROUTES.get(path)
            if route is None:
                raise AdminError(404, "admin.not_found", f"no admin endpoint {path}")
            if request.method not in (b"GET", b"HEAD"):
                raise AdminError(405, "admin.method_not_allowed",
                                 f"the admin API is read-only: use {ALLOWED_METHODS}")
            name, audience = route
            if remote:
                self._authorize(caller, audience, path)
            handler = getattr(self, name)
            await handler(exchange, _Request(path, dict(parse_qsl(query)), caller))
        except AdminError as error:
            await self._refuse(exchange, error, caller)

    async def _refuse(
        self,
        exchange: _Exchange,
        error: AdminError,
        caller: spiffe.SpiffeId | None,
        *,
        close: bool = False,
    ) -> None:
        """Log a refused request and answer it with its status and reason."""
        log.info(
            "admin request refused",
            extra={
                "reason": error.reason,
                "path": exchange.logged_path,
                "caller": str(caller) if caller else None,
            },
        )
        await exchange.json(
            error.status, {"error": error.reason, "detail": error.detail}, close=close
        )

    async def _failed(self, exchange: _Exchange, error: Exception) -> None:
        """Log a failure of the admin API's own, once, with its cause; answer 500 if no
        response has begun (the connection closes after it either way)."""
        path = exchange.logged_path
        log.error(
            "admin request failed",
            exc_info=error,
            extra={"reason": "admin.internal_error", "path": path},
        )
        if exchange.conn.our_state is not h11.SEND_RESPONSE:
            return
        detail = (
            f"the admin API failed to answer {path} ({type(error).__name__}: {error}); "
            "the proxy's log has the traceback"
        )
        with contextlib.suppress(_HeadAnswered, ConnectionError, ssl.SSLError):
            await exchange.json(
                500, {"error": "admin.internal_error", "detail": detail}, close=True
            )

    def _authorize(self, caller: spiffe.SpiffeId | None, audience: str, path: str) -> None:
        if audience == "anyone":
            return
        if caller is None:
            raise AdminError(
                403,
                "admin.client_certificate_required",
                f"{path} needs a mesh client certificate; without one only /ready and /live "
                "answer",
            )
        if caller.trust_domain != self.trust_domain:
            raise AdminError(
                403,
                "admin.foreign_identity",
                f"{caller} is not in trust domain {self.trust_domain}",
            )
        if audience == "operator" and caller.kind != "operator":
            raise AdminError(
                403,
                "admin.operator_only",
                f"{path} is for operator identities; {caller} is not one",
            )

    # --- endpoints ------------------------------------------------------------------------

    async def _ready(self, exchange: _Exchange, request: _Request) -> None:
        ready, reason = self.state.ready()
        await exchange.json(200 if ready else 503, {"ready": ready, "reason": reason})

    async def _live(self, exchange: _Exchange, request: _Request) -> None:
        await exchange.json(200, {"live": True})

    async def _metrics(self, exchange: _Exchange, request: _Request) -> None:
        self.obs.bus.flush()  # the requests the bus still holds count
        await exchange.respond(
            200, self.obs.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8"
        )

    async def _stats(self, exchange: _Exchange, request: _Request) -> None:
        try:
            window = parse_duration(request.query.get("window", "60s"))
        except ValueError as exc:
            raise AdminError(400, "admin.bad_window", str(exc)) from None
        window = min(max(window, 1.0), MAX_WINDOW_S)  # what the stats cover: 1 s to 10 min
        self.obs.bus.flush()
        rows = self.obs.stats.snapshot(window)
        await exchange.json(
            200,
            {
                "service": self.state.service,
                "instance": self.instance_id,
                "version": self.version,
                "window_s": window,
                "in_flight": self.state.in_flight(),
                "in_flight_inbound": self.state.in_flight_inbound(),  # of in_flight: from peers
                "tcp_open": self.state.open_connections(),  # linkerd's TCP_CONN
                # per listener: connections open, cap, saturated now, times it was
                "listeners": self.obs.listeners.snapshot(),
                "routes": [r for r in rows if r["direction"] == "inbound"],
                "upstreams": [r for r in rows if r["direction"] == "outbound"],
            },
        )

    async def _endpoints(self, exchange: _Exchange, request: _Request) -> None:
        await exchange.json(200, self.state.endpoints())

    async def _certs(self, exchange: _Exchange, request: _Request) -> None:
        await exchange.json(200, self.state.certs())

    async def _config(self, exchange: _Exchange, request: _Request) -> None:
        await exchange.json(200, self.state.config())

    async def _tap(self, exchange: _Exchange, request: _Request) -> None:
        try:
            query = _tap_query(request.query)
            tap_filter = TapFilter.from_query(query)
            rate = max_rate(query)
        except ValueError as exc:
            raise AdminError(400, "admin.bad_tap_filter", str(exc)) from None
        _within_cap("tap", self.obs.tap.subscribers, MAX_TAPS)
        subscription = self.obs.tap.subscribe(tap_filter, max_rate=rate)
        log.info(
            "tap started",
            extra={
                "caller": str(request.caller) if request.caller else "local",
                "filter": request.query,
            },
        )
        try:
            # formatted here, a batch at a time (and once for every subscriber)
            await self._stream(exchange, subscription.feed, [], encode=RequestEvent.tap_line)
        finally:
            self.obs.tap.unsubscribe(subscription)

    async def _logs(self, exchange: _Exchange, request: _Request) -> None:
        """The last `limit` lines (0: none) at `level` or above logged at `since` (a unix time,
        as a line's `ts`) or later, then with `follow=1` each new one. A client that resumes
        passes the `ts` of the last line it has and drops those of that time it already has."""
        level = request.query.get("level", "debug")
        self.obs.bus.flush()  # access log lines of the requests the bus still holds
        try:
            limit = min(int(request.query.get("limit", "500")), 5000)
            if limit < 0:
                raise ValueError(f"limit {limit}: must be 0 or more")
            try:
                since = float(request.query.get("since", "-inf"))
            except ValueError:
                raise ValueError(f"since {request.query['since']!r}: expected a unix time, "
                                 "as the ts of a line") from None
            lines = [line for line in self.obs.logs.recent(level, limit=5000)
                     if line["ts"] >= since]
            recent = lines[len(lines) - limit:] if limit else []
        except ValueError as exc:
            raise AdminError(400, "admin.bad_log_query", str(exc)) from None
        if request.query.get("follow") not in ("1", "true"):
            body = b"".join(_line(item) for item in recent)
            await exchange.respond(200, body, "application/x-ndjson")
            return
        _within_cap("log follow", self.obs.logs.followers, MAX_LOG_FOLLOWS)
        feed = self.obs.logs.follow(level)
        try:
            await self._stream(exchange, feed, recent, encode=_line)
        finally:
            self.obs.logs.unfollow(feed)

    async def _stream(
        self,
        exchange: _Exchange,
        feed: BoundedFeed[T],
        first: list[T],
        encode: Callable[[T], bytes],
    ) -> None:
        """NDJSON until the client goes away or the server closes (then the stream ends
        properly, with its last chunk); `{"dropped": N}` tells the client what it missed."""
        await exchange.send(
            h11.Response(
                status_code=200,
                headers=[
                    ("content-type", "application/x-ndjson"),
                    ("cache-control", "no-store"),
                    ("date", formatdate(usegmt=True)),
                ],
            )
        )
        if first:
            await exchange.send(h11.Data(data=b"".join(encode(item) for item in first)))
        gone = asyncio.ensure_future(exchange.reader.read(1))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while True:
                batch = asyncio.ensure_future(feed.batch())
                done, _ = await asyncio.wait(
                    {batch, gone, closing}, return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    batch.cancel()
                    return
                if batch not in done:
                    batch.cancel()
                    await exchange.send(h11.EndOfMessage())
                    return
                items, dropped = batch.result()
                payload = b"".join(encode(item) for item in items)
                if dropped:
                    payload += _line({"dropped": dropped})
                await exchange.send(h11.Data(data=payload))
                # gather what comes next into one write: a busy proxy writes a stream
                # 1/STREAM_FLUSH_S times a second, not once per request
                await asyncio.sleep(STREAM_FLUSH_S)
        finally:
            gone.cancel()
            closing.cancel()


async def _streams(sock: socket.socket, ssl_context: ssl.SSLContext | None = None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """An accepted connection as asyncio streams, after its TLS handshake with `ssl_context`
    (within `HANDSHAKE_TIMEOUT_S`); None, and the socket closed, when that fails."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    tls: dict[str, Any] = {} if ssl_context is None else {
        "ssl": ssl_context, "ssl_handshake_timeout": HANDSHAKE_TIMEOUT_S}
    try:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock, **tls)
    except (OSError, ssl.SSLError, TimeoutError):
        sock.close()
        return None
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _clear_socket_path(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


def _inode(path: Path) -> int:
    return path.stat().st_ino


def _remove_socket(path: Path, inode: int) -> None:
    """Remove our socket file, unless it is gone or a newer proxy has bound the path since."""
    with contextlib.suppress(OSError):
        if path.stat().st_ino == inode:
            path.unlink()


def _restrict_socket(path: Path) -> None:
    path.chmod(0o660)



def _peer_identity(writer: asyncio.StreamWriter) -> spiffe.SpiffeId | None:
    """The caller's identity on the admin port; None without a certificate or a SPIFFE ID."""
    try:
        return peer_identity(writer.get_extra_info("ssl_object"))
    except PeerIdentityError:
        return None


def _within_cap(kind: str, open_now: int, cap: int) -> None:
    """AdminError 503 `admin.too_many_streams` when `open_now` streams of `kind` are the most
    a proxy serves at once: one more would add to the work of every request (or log line)."""
    if open_now >= cap:
        raise AdminError(
            503,
            "admin.too_many_streams",
            f"this proxy serves at most {cap} {kind} streams at once and all are open; "
            "close one (another console or script may hold them) and try again",
        )


def _tap_query(query: dict[str, str]) -> dict[str, str]:
    """The tap's parameters, the terms of `filter` among them (DESIGN's `/v1/tap?filter=...`:
    `key=value` terms separated by spaces, with the parameters' keys: `status=5xx path=/items`);
    ValueError for a term that is not `key=value` or a key given twice."""
    terms = dict(query)
    for term in terms.pop("filter", "").split():
        key, sep, value = term.partition("=")
        if not sep:
            raise ValueError(f"tap filter term {term!r}: write key=value, like status=5xx")
        if key in terms:
            raise ValueError(f"tap filter {key!r} is given twice")
        terms[key] = value
    return terms
