"""The outbound side: plain HTTP from the local app, sent over mTLS to a peer proxy.

The app sends to 127.0.0.1:4140 with `Host: <service>` (or `<service>.mesh`, or
`<service>.<datacenter>.mesh` for another site's: vm_mesh.discovery.sites),
or uses the proxy as HTTP_PROXY with absolute-form URLs. Each request goes
through the stack: route -> policy (retry, timeout, split, mirror) ->
balancer -> endpoint (breaker) -> pooled mTLS connection.
"""

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable
from typing import Final
from urllib.parse import urlsplit

from proxy.acceptor import Acceptor, listen
from proxy.connection import Connection
from proxy.context import ProxyContext
from proxy.continue_body import ContinueBody
from proxy.downstream import Downstream
from proxy.endpoints import Endpoint, NoEndpoints, ServiceEndpoints
from proxy.events import RequestEvent
from proxy.http1 import Http1Error, MessageEnd, RequestHead
from proxy.keepalive import keep_alive
from proxy.listener_limits import ConnectionLimit
from proxy.normalize import BadPath, normalize_target
from proxy.relay import (
    Body,
    Response,
    UpstreamProtocolError,
    body_repeatable,
    closed_unread,
    discard,
    may_resend,
    relay_response,
    request_headers,
    send_request,
)
from proxy.retrying import AttemptFailed, DeadlineExceeded, RetriesExhausted
from proxy.route import RequestFacts
from proxy.timeouts import TaskTimer
from proxy.tls import ALPN_HTTP, upstream_refusal
from proxy.tracecontext import hand_on, join_trace
from proxy.upstream import Pool, Upstream, dial
from vm_mesh.discovery import sites

log = logging.getLogger("vmesh.proxy.outbound")

MAX_BUFFERED_BODY = 64 * 1024  # bodies up to this size are kept, so they can be retried
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


class Destination:
    """The mesh service a request goes to, the authority it named, its target, and whether
    that target was in absolute form (its authority then replaces the Host header).

    (Not a dataclass: one is made per request, and mypyc compiles this `__init__`.)
    """

    __slots__ = ("absolute", "authority", "service", "target")

    def __init__(self, service: str, authority: str, target: str, absolute: bool) -> None:
        self.service: Final = service
        self.authority: Final = authority
        self.target: Final = target
        self.absolute: Final = absolute


def destination(head: RequestHead, fixed_service: str | None = None) -> Destination:
    """The mesh service a request is for, from absolute-form or the Host header.

    `fixed_service` is the service of a per-upstream TCP listener whose connection was
    detected as HTTP: it is the destination whatever the request names (the authority
    is kept for metrics and tap).
    """
    target = head.target
    # origin-form (nearly every request) starts with "/"; a scheme is case-insensitive
    scheme = "" if target.startswith("/") else target[:8].lower()
    absolute = scheme.startswith(("http://", "https://"))
    if absolute:
        if scheme == "https://":
            raise Http1Error(
                400,
                "http1.https_url_on_plaintext_connection",
                "https:// URLs cannot be proxied in plain text",
            )
        url = urlsplit(target)
        authority = url.netloc  # with no userinfo: the parser refused any
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    else:
        authority = (head.header(b"host") or b"").decode("ascii", "replace")
    if fixed_service is not None:
        return Destination(fixed_service, authority or fixed_service, target, absolute)
    host = authority.rsplit(":", 1)[0] if not authority.endswith("]") else authority
    name = host.lower().removesuffix(".")
    service = name.removesuffix(".mesh")
    if not service or "." in service:
        service = sites.from_host(name) or ""  # `api.east` for `api.east.mesh`: another site's
        if not service:
            raise Http1Error(
                400,
                "http1.unknown_authority",
                f"{authority!r} is not a mesh service "
                "(use <service>, <service>.mesh or <service>.<datacenter>.mesh)",
            )
    return Destination(service, authority, target, absolute)


class OutboundProxy:
    """Serves the app's outbound connections."""

    def __init__(self, context: ProxyContext) -> None:
        self.ctx = context
        self.pool = Pool(self._connect, idle_timeout=context.config.timeouts.idle / 2)
        context.upstream_pools.append(self.pool)  # closes what it holds to instances gone
        self.name = f"{context.config.instance} outbound"

    async def _connect(self, key: str) -> Upstream:
        """Open an mTLS connection to `service@host:port` and check the server's identity; a key
        `service@host:port/<server name>` is another site's gateway, which carries the connection
        to the instance that the server name asks for (the identity checked is the same)."""
        service, _, address = key.partition("@")
        address, _, server_name = address.partition("/")
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        expected = f"spiffe://{self.ctx.config.trust_domain}/svc/{service}"
        connection = await dial(
            host,
            int(port),
            within=self.ctx.config.timeouts.connect,
            reason="upstream",
            what=address,
            ssl=self.ctx.tls.client,
            server_hostname=server_name or service,
        )
        refusal = upstream_refusal(connection.get_extra_info("ssl_object"), expected, ALPN_HTTP)
        if refusal is not None:
            connection.close()
            raise AttemptFailed("connect-failure", refusal)
        keep_alive(connection.get_extra_info("socket"))
        self.ctx.observability.metrics.connections.labels("outbound", "true").inc()
        return Upstream(key, connection, expected)

    def serve(self, host: str, port: int, limit: ConnectionLimit,
              sock: socket.socket | None = None) -> Acceptor:
        """Listen for the app (on `sock` if given), at most `limit` connections at once; each
        connection is served by `handle`."""
        return listen(host, port, self.handle, self.ctx.connections, limit, sock)

    async def handle(self, connection: Connection, fixed_service: str | None = None) -> None:
        """Serve the requests of one app connection; `fixed_service` (a per-upstream TCP
        listener's connection detected as HTTP) is every request's destination."""
        timer = TaskTimer()
        own_id = self.ctx.tls.identity_uri  # the identity its upstream connections present
        with self.ctx.downstream(connection, self.name) as client:
            try:
                while True:
                    try:
                        head = await client.next_request()
                    except Http1Error as exc:
                        await self._refuse(client, exc, fixed_service)
                        return
                    if head is None or not await self._request(
                        client, head, fixed_service, timer, own_id
                    ):
                        return
            except (ConnectionError, OSError):
                pass
            finally:
                timer.close()

    async def _refuse(
        self, client: Downstream, error: Http1Error, fixed_service: str | None
    ) -> None:
        started = time.monotonic()
        event = self.ctx.new_event("outbound", client.peer_addr)
        event.dst_service = fixed_service
        event.status, event.error = error.status, error.reason
        log.info(
            "request refused",
            extra={"reason": error.reason, "client": client.peer_addr, "detail": str(error)},
        )
        await client.send_error(error.status, error.reason, str(error), close=True)
        self.ctx.publish(event, started)

    async def _request(
        self,
        client: Downstream,
        head: RequestHead,
        fixed_service: str | None,
        timer: TaskTimer,
        own_id: str,
    ) -> bool:
        """Serve one request; False when the client connection must close."""
        started = time.monotonic()
        event = self.ctx.new_event("outbound", client.peer_addr)
        event.method, event.path, event.tls = head.method, head.target, True
        event.src_id = own_id
        traceparent = join_trace(head.headers, event, self.ctx.exporting_spans)
        with self.ctx.request_in_flight():
            try:
                return await self._forward(client, head, event, fixed_service, timer, traceparent)
            except Http1Error as exc:
                event.status, event.error = exc.status, exc.reason
                await client.send_error(exc.status, exc.reason, str(exc), close=True)
                return False
            except asyncio.CancelledError:  # still in flight at the drain deadline
                self.ctx.cut_request(client, event)
                raise
            finally:
                event.bytes_in = client.body_bytes
                self.ctx.publish(event, started)

    async def _forward(
        self,
        client: Downstream,
        head: RequestHead,
        event: RequestEvent,
        fixed_service: str | None,
        timer: TaskTimer,
        traceparent: bytes | None,
    ) -> bool:
        """Route and send one request; `traceparent`: this hop's, to hand on (sampled)."""
        dest = destination(head, fixed_service)
        event.authority = dest.authority
        event.dst_service = dest.service
        if dest.absolute:  # a proxy makes Host the target's authority (RFC 9112, 3.2.2)
            head.headers = [header for header in head.headers if header[0] != b"host"]
            head.headers.append((b"host", dest.authority.encode()))
        try:
            target = normalize_target(dest.target)
        except BadPath as bad_path:
            raise Http1Error(400, bad_path.reason, str(bad_path)) from None
        head.target = event.path = target.text
        if head.has_body:
            body, body_size = await self._body(client, head)
        else:
            body, body_size = (b"" if head.content_length is not None else None), 0
        headers = request_headers(head, body, [])
        if traceparent is not None:
            hand_on(headers, traceparent, event.trace_state)
        if not self.ctx.may_route_to(dest.service):
            limit = self.ctx.config.max_destinations
            return await self._fail(
                client, event, 503, "too_many_destinations",
                f"this proxy routes to {limit} services already (max_destinations); "
                f"{dest.service} must wait until one of them is unused",
            )
        facts = RequestFacts.build(head.method, target.path, target.query, head.headers)
        exchange = _Exchange(self, head, headers, body, event, client)
        try:
            response = await self.ctx.outbound_policy.forward(
                dest.service,
                facts,
                body_size,
                event,
                exchange.send,
                _status,
                self._discard,
                # a copy needs the body whole, or none at all (a streamed one, of no size here,
                # is not kept)
                exchange.send_shadow if body_size is not None else None,
                timer,
            )
        except NoEndpoints as none_left:
            return await self._fail(client, event, 503, none_left.reason, str(none_left))
        except DeadlineExceeded as late:
            return await self._fail(
                client, event, 504, late.reason, f"no response from {dest.service} in time"
            )
        except RetriesExhausted as exhausted:
            reason, _, detail = str(exhausted.failure).partition(": ")
            return await self._fail(client, event, 502, reason, detail or reason)
        except UpstreamProtocolError as bad_upstream:
            return await self._fail(
                client, event, 502, bad_upstream.reason, str(bad_upstream)
            )
        return await relay_response(
            response, client, head, event, self.pool,
            idle_timeout=client.idle_timeout, log=log,
        )

    async def _send_shadow(
        self,
        head: RequestHead,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        event: RequestEvent,
        shadow: str,
    ) -> None:
        """Send a mirrored copy to `shadow` and drop its response. The copy is no part of the
        caller's trace: the shadow's work would show in it as a second child of this hop."""
        mirrored = RequestEvent(
            ts=event.ts, id=event.id + "/mirror", direction="outbound", src_addr=""
        )
        if isinstance(body, ContinueBody):
            if body.data is None:
                return  # the primary was answered before the client sent its body
            body = body.data
        untraced = [header for header in headers if header[0] not in _TRACE_HEADERS]
        await self._discard(
            await self._send_once(head, untraced, body, mirrored, set(), shadow, None)
        )

    async def _discard(self, response: Response) -> None:
        """Drop a retried attempt's response: drain a small body and pool the connection.

        Keeping the connection spares the retry a new TLS handshake; a large, unframed or
        slow body is not worth waiting for, so that connection is closed instead.
        """
        upstream = response.upstream
        length = response.head.content_length
        if length is None or length > MAX_BUFFERED_BODY or response.head.chunked:
            await discard(response)
            return
        try:
            async with asyncio.timeout(self.ctx.config.timeouts.connect):
                while not isinstance(event := await upstream.next_event(), MessageEnd):
                    if event is None:
                        upstream.close()
                        return
        except (TimeoutError, Http1Error, ConnectionError, OSError):
            upstream.close()
            return
        self.pool.release(upstream, event.keep_alive and response.head.keep_alive)

    async def _body(self, client: Downstream, head: RequestHead) -> tuple[Body, int | None]:
        """The body (the head says there is one) and its size: bytes when small enough to
        retry, else a stream (never retried, size None). A client that waits for 100
        (Continue) has its body read only once an instance's proxy says go on."""
        length = head.content_length
        kept = length if length is not None and length <= MAX_BUFFERED_BODY else None
        if head.expects_continue:
            client.request_keep_alive = False  # an answer before the body ends the connection
            return ContinueBody(client, kept), kept
        if kept is not None:
            body = await client.read_body()
            return body, len(body)
        return client.body(), None

    async def _send_once(
        self,
        head: RequestHead,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        event: RequestEvent,
        tried: set[str],
        backend: str,
        client: Downstream | None,
    ) -> Response:
        """Send to one instance of `backend`, another if connecting to it fails
        (`ProxyContext.to_an_instance`: `tried` holds the instances earlier attempts of this
        request went to). Interim responses go to `client` (None: a mirrored copy's go
        nowhere)."""

        def send_to(_endpoints: ServiceEndpoints, endpoint: Endpoint) -> Awaitable[Response]:
            return self._send_to(endpoint, head, headers, body, event, client)

        return await self.ctx.to_an_instance(backend, event, tried, send_to)

    async def _send_to(
        self,
        endpoint: Endpoint,
        head: RequestHead,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        event: RequestEvent,
        client: Downstream | None,
    ) -> Response:
        instance = endpoint.instance
        event.dst_instance, event.dst_addr = instance.instance_id, endpoint.authority
        endpoint.breaker.on_request()
        endpoint.ewma.pending += 1
        started = time.monotonic()
        key = endpoint.pool_key
        try:
            upstream = self.pool.take(key)
            pooled = upstream is not None
            if upstream is None:
                upstream = await self.pool.open(key)
            try:
                response = await send_request(upstream, head, headers, body, client=client)
            except AttemptFailed:
                # the peer closed this pooled connection as the request went out, or died
                # with the request: one safe to repeat goes once more, on a new connection
                if not (pooled and may_resend(head, body)):
                    raise
                response = await self._send_anew(key, head, headers, body, client,
                                                 "upstream.reset")
            else:
                # the peer proxy closed the connection idle (a drain, its idle timeout) and
                # says so: the request crossed the close unread, and goes again, whatever it is
                if response.head.status == 408 and closed_unread(response.head) \
                        and body_repeatable(body):
                    upstream.close()
                    response = await self._send_anew(key, head, headers, body, client,
                                                      "proxy.idle_closed")
        except (AttemptFailed, UpstreamProtocolError):
            endpoint.breaker.on_failure()
            raise
        except BaseException:
            # a timeout fired (the task is cancelled) or the client left: the instance's latency
            # is at least the wait, so the balancer learns of an instance that stopped
            # answering; there is no outcome for the breaker
            endpoint.ewma.observe((time.monotonic() - started) * 1000)
            endpoint.breaker.on_abandoned()
            raise
        finally:
            endpoint.ewma.pending -= 1
        endpoint.ewma.observe((time.monotonic() - started) * 1000)
        if response.status >= 500:
            endpoint.breaker.on_failure()
        else:
            endpoint.breaker.on_success()
        event.dst_id = response.upstream.peer_id
        return response

    async def _send_anew(
        self,
        key: str,
        head: RequestHead,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        client: Downstream | None,
        reason: str,
    ) -> Response:
        """Send once more, on a new connection to `key`: the first attempt's did not take the
        request (`_send_to`), for `reason`, which the resend metric counts."""
        self.ctx.observability.metrics.resends.labels("outbound", reason).inc()
        upstream = await self.pool.open(key)
        return await send_request(upstream, head, headers, body, client=client)

    async def _fail(
        self, client: Downstream, event: RequestEvent, status: int, reason: str, detail: str
    ) -> bool:
        event.status, event.error = status, reason
        log.info(
            "request failed",
            extra={
                "status": status,
                "reason": reason,
                "detail": detail,
                "dst_service": event.dst_service,
            },
        )
        await client.send_error(status, reason, detail, close=False)
        return client.request_keep_alive


class _Exchange:
    """One request on its way out: `send` makes an attempt at a backend, `send_shadow` sends
    a mirrored copy. (One object per request, rather than a `functools.partial` for each.)"""

    __slots__ = ("_body", "_client", "_event", "_head", "_headers", "_proxy", "_tried")

    def __init__(
        self,
        proxy: OutboundProxy,
        head: RequestHead,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        event: RequestEvent,
        client: Downstream,
    ) -> None:
        self._proxy = proxy
        self._client = client
        self._head = head
        self._headers = headers
        self._body = body
        self._event = event
        self._tried: set[str] = set()  # the instances earlier attempts went to

    def send(self, backend: str) -> Awaitable[Response]:
        return self._proxy._send_once(
            self._head, self._headers, self._body, self._event, self._tried, backend, self._client
        )

    def send_shadow(self, shadow: str) -> Awaitable[None]:
        return self._proxy._send_shadow(self._head, self._headers, self._body, self._event, shadow)


def _status(response: Response) -> int:
    return response.status
