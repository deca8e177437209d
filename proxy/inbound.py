"""The inbound side: mTLS from peer proxies, authorized, then plain HTTP to the local app.

The TLS handshake is done here (not by the listener) so that a peer without
a valid mesh identity is refused with a reason in the log and in tap. The
caller's SPIFFE ID is checked against the authorization policy before the
app sees a byte, and passed to the app in `vmesh-client-id`, which this
proxy always overwrites. Opaque TCP (ALPN `vmesh-opaque/2`) is relayed as bytes.
"""

import asyncio
import contextlib
import logging
import socket
import ssl
import time

from proxy.acceptor import Acceptor
from proxy.connection import Connection
from proxy.context import ProxyContext
from proxy.continue_body import CONTINUE
from proxy.downstream import Downstream
from proxy.events import RequestEvent
from proxy.http1 import Http1Error, RequestHead
from proxy.inbound_policy import InboundAuthorization, annotate, forbidden_response
from proxy.keepalive import keep_alive
from proxy.listener_limits import ConnectionLimit
from proxy.normalize import BadPath, normalize_target
from proxy.relay import (
    UpstreamProtocolError,
    may_resend,
    relay_response,
    request_headers,
    send_request,
)
from proxy.retrying import AttemptFailed
from proxy.tcp import Tunnel
from proxy.tls import ALPN_OPAQUE, PeerIdentityError, peer_identity
from proxy.tracecontext import hand_on, join_trace
from proxy.upstream import Pool, Upstream, dial
from vm_mesh.defaults import CLIENT_ID_HEADER

log = logging.getLogger("vmesh.proxy.inbound")

_CLIENT_ID = CLIENT_ID_HEADER.encode()


class InboundProxy:
    """Serves mTLS connections from other proxies for the local app."""

    def __init__(self, context: ProxyContext) -> None:
        self.ctx = context
        self._stats = context.observability.stats
        config = context.config
        self.app = f"{config.app_address}:{config.app_port}"
        self.pool = Pool(self._connect_app, idle_timeout=config.timeouts.app_idle)
        self.authz = InboundAuthorization(config.service, lambda: context.traffic)
        self.instance = config.instance  # not live-reloadable; may cost a gethostname()
        self.service = config.service
        self.name = f"{self.instance} inbound"

    async def _connect_app(self, key: str) -> Upstream:
        host, _, port = key.rpartition(":")
        connection = await dial(
            host,
            int(port),
            within=self.ctx.config.timeouts.connect,
            reason="app",
            what=f"the app at {key}",
        )
        return Upstream(key, connection)

    def serve(self, host: str, port: int, limit: ConnectionLimit,
              sock: socket.socket | None = None) -> Acceptor:
        """Listen for peer proxies (on `sock` if given), at most `limit` connections at once;
        every accepted socket is handshaken by `_handshake`, in a task kept in the context's
        `connections`."""
        return Acceptor(host, port, self._handshake, self.ctx.connections, limit, sock=sock)

    async def _handshake(self, sock: socket.socket) -> None:
        """TLS on an accepted socket; a refused handshake is logged and tapped with its reason."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            peer = sock.getpeername()
        except OSError:
            sock.close()
            return
        peer_addr = f"{peer[0]}:{peer[1]}"
        keep_alive(sock)
        connection = Connection()
        try:
            await loop.connect_accepted_socket(
                lambda: connection,
                sock,
                ssl=self.ctx.tls.front,
                ssl_handshake_timeout=self.ctx.config.timeouts.header,
            )
        except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as exc:
            self._handshake_refused(peer_addr, exc, started)
            sock.close()
            return
        ssl_object = connection.get_extra_info("ssl_object")
        try:
            caller = str(peer_identity(ssl_object))
        except PeerIdentityError as no_identity:
            self._handshake_refused(peer_addr, no_identity, started)
            connection.abort()
            return
        self.ctx.observability.metrics.connections.labels("inbound", "true").inc()
        try:
            if ssl_object.selected_alpn_protocol() == ALPN_OPAQUE:
                reader, writer = connection.into_streams()
                await self._opaque(reader, writer, caller, peer_addr)
            else:
                await self._http(connection, caller)
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            connection.close()

    def _handshake_refused(self, peer_addr: str, exc: BaseException, started: float) -> None:
        detail = (
            "handshake timed out"
            if isinstance(exc, TimeoutError)
            else (str(exc) or type(exc).__name__)
        )
        reason = "tls.no_identity" if isinstance(exc, PeerIdentityError) else "tls.handshake_failed"
        log.warning(
            "connection refused: no valid mesh identity",
            extra={"reason": reason, "client": peer_addr, "detail": detail},
        )
        event = self.ctx.new_event("inbound", peer_addr)
        event.dst_service, event.error = self.ctx.config.service, f"{reason}: {detail}"[:200]
        self.ctx.publish(event, started)

    async def _http(self, connection: Connection, caller: str) -> None:
        with self.ctx.downstream(connection, self.name, from_peer_proxy=True) as client:
            await self._serve(client, caller)

    async def _serve(self, client: Downstream, caller: str) -> None:
        """Requests of one peer connection, one after the other, until it ends."""
        own_id = self.ctx.tls.identity_uri  # what this connection's handshake presented
        while True:
            try:
                head = await client.next_request()
            except Http1Error as exc:
                started = time.monotonic()
                event = self._event(client, caller, own_id)
                event.status, event.error = exc.status, exc.reason
                await client.send_error(exc.status, exc.reason, str(exc), close=True)
                self.ctx.publish(event, started)
                return
            if head is None:
                return
            started = time.monotonic()  # not before: a kept-alive connection idles in between
            event = self._event(client, caller, own_id)
            event.method, event.path, event.authority = (
                head.method,
                head.target,
                (head.header(b"host") or b"").decode("ascii", "replace"),
            )
            traceparent = join_trace(head.headers, event, self.ctx.exporting_spans)
            with self.ctx.request_in_flight(inbound=True):
                self._stats.started(event)  # its row is this service's, known already
                try:
                    keep = await self._request(client, head, event, caller, traceparent)
                except Http1Error as exc:
                    event.status, event.error = exc.status, exc.reason
                    await client.send_error(exc.status, exc.reason, str(exc), close=True)
                    keep = False
                except asyncio.CancelledError:  # still in flight at the drain deadline
                    self.ctx.cut_request(client, event)
                    raise
                finally:
                    event.bytes_in = client.body_bytes
                    self.ctx.publish(event, started)
            if not keep:
                return

    def _event(self, client: Downstream, caller: str, own_id: str) -> RequestEvent:
        event = self.ctx.new_event("inbound", client.peer_addr)
        event.src_id, event.tls = caller, True
        event.dst_service = self.service
        event.dst_instance, event.dst_addr = self.instance, self.app
        event.dst_id = own_id
        return event

    async def _request(
        self, client: Downstream, head: RequestHead, event: RequestEvent, caller: str,
        traceparent: bytes | None,
    ) -> bool:
        try:
            target = normalize_target(head.target)
        except BadPath as bad_path:
            raise Http1Error(400, bad_path.reason, str(bad_path)) from None
        head.target = event.path = target.text
        if head.header(b"host") is None:  # an HTTP/1.0 request: the app gets HTTP/1.1
            raise Http1Error(400, "http1.missing_host", "the request names no Host")
        decision = self.authz.check_http(caller, head.method, target, head.headers)
        annotate(event, decision)
        if decision.verdict == "deny":
            status, refusal_headers, refusal_body = forbidden_response(decision)
            event.status = status
            head_bytes = (
                f"HTTP/1.1 {status} Forbidden\r\n".encode()
                + b"".join(f"{k}: {v}\r\n".encode() for k, v in refusal_headers)
                + b"\r\n"
            )
            await client.write(head_bytes + refusal_body)
            return False
        continues = head.has_body and head.expects_continue
        if continues:
            client.request_keep_alive = False  # an answer before the body ends the connection
        body = (
            client.body() if head.has_body else (b"" if head.content_length is not None else None)
        )
        headers = request_headers(head, body, [(_CLIENT_ID, caller.encode())])
        if traceparent is not None:  # this hop's span is the app's parent
            hand_on(headers, traceparent, event.trace_state)
        pooled = self.pool.take(self.app)
        upstream = pooled or await self._app_connection(client, event)
        if upstream is None:
            return client.request_keep_alive
        if continues:  # authorized, and the app is there to take it: the body may come
            await client.write(CONTINUE)
        idle = client.idle_timeout
        try:
            try:
                response = await send_request(upstream, head, headers, body, idle, client)
            except AttemptFailed:
                if pooled is None or not may_resend(head, body):
                    raise
                # the app closed this idle connection as the request went out (its keep-alive
                # timeout fired): a request safe to repeat goes again, on a new connection
                self.ctx.observability.metrics.resends.labels("inbound", "app.reset").inc()
                upstream = await self.pool.open(self.app)
                response = await send_request(upstream, head, headers, body, idle, client)
        except TimeoutError:
            event.status, event.error = 504, "app.timeout"
            await client.send_error(504, event.error, f"the app sent no response in {idle:g}s",
                                    close=False)
            return client.request_keep_alive
        except (AttemptFailed, UpstreamProtocolError) as exc:
            reason, _, detail = str(exc).partition(": ")
            reason = (
                getattr(exc, "reason", reason) if isinstance(exc, UpstreamProtocolError) else reason
            )
            event.status, event.error = 502, reason or "app.reset"
            await client.send_error(502, event.error, detail or str(exc), close=True)
            return False
        return await relay_response(
            response, client, head, event, self.pool,
            idle_timeout=client.idle_timeout, log=log,
        )

    async def _app_connection(self, client: Downstream, event: RequestEvent) -> Upstream | None:
        """A new connection to the app (none idle in the pool); None when the app is
        unreachable, and the client has had its 502."""
        try:
            return await self.pool.open(self.app)
        except AttemptFailed as exc:
            reason, _, detail = str(exc).partition(": ")
            event.status, event.error = 502, reason
            log.warning("app unreachable", extra={"reason": reason, "detail": detail})
            await client.send_error(502, reason, detail, close=False)
            return None

    async def _opaque(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        caller: str,
        peer_addr: str,
    ) -> None:
        started = time.monotonic()
        event = self.ctx.new_event("inbound", peer_addr)
        event.src_id, event.tls, event.dst_service = caller, True, self.ctx.config.service
        event.dst_addr = self.app
        decision = self.authz.check_tcp(caller)
        annotate(event, decision)
        metrics = self.ctx.observability.metrics
        meter = None
        try:
            if decision.verdict == "deny":
                return
            try:
                app_reader, app_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.ctx.config.app_address, self.ctx.config.app_port),
                    self.ctx.config.timeouts.connect,
                )
            except (TimeoutError, ConnectionError, OSError) as exc:
                event.error = f"app.connect_failed: {exc}"[:200]
                return
            meter = metrics.tcp_meter(event)
            with (self.ctx.request_in_flight(inbound=True), contextlib.closing(app_writer),
                  self.ctx.tunnelling()):
                # the plain side is the app, the client the peer proxy on the TLS side
                await Tunnel(event, meter, plain_is_client=False).relay(
                    app_reader, app_writer, reader, writer
                )
        finally:
            (meter or metrics.tcp_meter(event)).close(event.error)
            self.ctx.publish(event, started)
