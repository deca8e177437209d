"""Opaque TCP: bytes relayed both ways, half-close passed on, nothing parsed.

On the outbound side each configured TCP upstream gets a local listener.
Its connections are inspected first (proxy/detect.py): one that begins with an
HTTP/1.x request line is served by the outbound HTTP stack with the upstream
as its destination; any other, one silent for the service's `detect_timeout`
(server-speaks-first protocols) and every one on a port of the service's
`opaque_ports` go over mTLS (ALPN `vmesh-opaque/2`) to an instance's inbound
port, which relays them to the app there. Between the two proxies the bytes
are length-framed so either side's FIN crosses TLS as an end frame.

The instance is chosen when the connection opens, as for an HTTP request
(ProxyContext.to_an_instance): one of the service's own, else one of its
ServicePolicy `failover` destination's; another when connecting to it fails, since
none of the client's bytes were sent yet. The balancer sees each open tunnel as an
outstanding request on its instance, from the connect until it closes, and the
connect and handshake time as the instance's latency, as Linkerd does: connections
held open spread over the instances, and new ones go to those carrying fewer. An
instance of another site behind its mesh gateways (`api.east`) is reached through a
gateway, asked for by the TLS server name.
"""

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from proxy.acceptor import Acceptor, listen
from proxy.balance import PeakEwma
from proxy.connection import Connection
from proxy.detect import DEFAULT_DETECT_TIMEOUT, Protocol, detect
from proxy.endpoints import Endpoint, NoEndpoints, ServiceEndpoints
from proxy.events import RequestEvent
from proxy.keepalive import keep_alive
from proxy.listener_limits import ConnectionLimit
from proxy.metrics import error_reason
from proxy.retrying import AttemptFailed
from proxy.tls import ALPN_OPAQUE, upstream_refusal

if TYPE_CHECKING:
    from proxy.context import ProxyContext
    from proxy.metrics import TcpMeter
    from proxy.outbound import OutboundProxy

log = logging.getLogger("vmesh.proxy.tcp")

CHUNK = 64 * 1024


# Between proxies the bytes travel in frames: a 4-byte big-endian length, then that
# many bytes; a frame of length 0 is the end of that direction. asyncio cannot
# half-close a TLS stream (no write_eof), so without this a client's FIN would
# have to tear down the whole connection and the server's reply would be lost.
FRAME_HEADER = 4
END_OF_STREAM = (0).to_bytes(FRAME_HEADER, "big")


Count = Callable[[float], None]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# an opaque connection to an instance: its streams, and the load estimate of the instance,
# which counts the connection as outstanding until it closes (`TcpUpstreamListener._connect`)
Opened = tuple[asyncio.StreamReader, asyncio.StreamWriter, PeakEwma]


class _Flow:
    """The bytes relayed one way so far, counted in metrics as they pass."""

    __slots__ = ("_count", "total")

    def __init__(self, count: Count) -> None:
        self._count = count
        self.total = 0

    def passed(self, size: int) -> None:
        self.total += size
        self._count(size)


async def _plain_to_frames(plain: asyncio.StreamReader, tls: asyncio.StreamWriter,
                           flow: _Flow) -> None:
    """Frame what the plain side sends; on its EOF send the end frame."""
    while data := await plain.read(CHUNK):
        flow.passed(len(data))
        tls.write(len(data).to_bytes(FRAME_HEADER, "big") + data)
        await tls.drain()
    tls.write(END_OF_STREAM)
    await tls.drain()


async def _frames_to_plain(tls: asyncio.StreamReader, plain: asyncio.StreamWriter,
                           flow: _Flow) -> None:
    """Unframe what the peer proxy sends; the end frame half-closes the plain side. A TLS
    connection that ends without the end frame was cut: `tunnel` resets the plain side."""
    while size := int.from_bytes(await tls.readexactly(FRAME_HEADER), "big"):
        data = await tls.readexactly(size)
        flow.passed(len(data))
        plain.write(data)
        await plain.drain()
    if plain.can_write_eof():
        plain.write_eof()


def reset(plain: asyncio.StreamWriter) -> None:
    """Cut a plain TCP connection with an RST (SO_LINGER 0): a FIN would look like the
    stream's own end, and its peer would take a truncated stream for a whole one."""
    sock = plain.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    plain.transport.abort()


def _cut(plain: asyncio.StreamWriter, tls: asyncio.StreamWriter) -> None:
    """Cut both sides, so that neither peer takes a truncated stream for a whole one: the
    plain side with an RST (`reset`), the TLS side without close_notify (its peer proxy sees
    no end frame and cuts its plain side)."""
    reset(plain)
    tls.transport.abort()


# a tunnel still open at its proxy's drain deadline, cut by the proxy (`Tunnel.relay`)
DRAIN_CUT = "tcp.drain_timeout: cut by the proxy, still open at its drain deadline"


class Tunnel:
    """One relay of a plain connection over a framed mTLS one, for the request event of its
    client connection (the plain side on the outbound proxy, the TLS side on the inbound):
    its bytes are counted in `meter` as they pass, and the event gets them and the error
    (None when both directions ended cleanly) once the relay ends."""

    __slots__ = ("_event", "_from_client", "_plain_is_client", "_to_client")

    def __init__(self, event: RequestEvent, meter: "TcpMeter", plain_is_client: bool) -> None:
        self._event = event
        self._from_client, self._to_client = _Flow(meter.read), _Flow(meter.written)
        self._plain_is_client = plain_is_client

    async def relay(
        self,
        plain_reader: asyncio.StreamReader,
        plain_writer: asyncio.StreamWriter,
        tls_reader: asyncio.StreamReader,
        tls_writer: asyncio.StreamWriter,
    ) -> None:
        """Relay until both directions ended. A failure either way (a reset, a TLS connection
        cut without its end frame), or the relay cancelled (the proxy cuts its tunnels at its
        drain deadline: `DRAIN_CUT`), cuts both connections (`_cut`), and the peer proxy cuts
        its own plain side in turn: a cut travels end to end as a cut."""
        from_plain, to_plain = self._from_client, self._to_client
        if not self._plain_is_client:
            from_plain, to_plain = to_plain, from_plain
        outgoing = asyncio.ensure_future(_plain_to_frames(plain_reader, tls_writer, from_plain))
        incoming = asyncio.ensure_future(_frames_to_plain(tls_reader, plain_writer, to_plain))
        error = None
        try:
            await asyncio.gather(outgoing, incoming)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            error = f"tcp.reset: {str(exc) or type(exc).__name__}"[:200]
            _cut(plain_writer, tls_writer)
        except asyncio.CancelledError:
            error = DRAIN_CUT
            _cut(plain_writer, tls_writer)
            raise
        finally:
            for task in (outgoing, incoming):
                task.cancel()
            for writer in (tls_writer, plain_writer):
                with contextlib.suppress(Exception):
                    writer.close()
            event = self._event
            event.bytes_in, event.bytes_out = self._from_client.total, self._to_client.total
            event.error = error


async def sniff(connection: Connection, within: float) -> str:
    """Wait up to `within` seconds for the first bytes to tell the protocol: `http`, or why
    the connection is opaque (`not_http`, `timeout`, `closed`). The bytes stay unread."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        verdict = detect(connection.early)
        if verdict is Protocol.HTTP:
            return "http"
        if verdict is Protocol.OPAQUE:
            return "not_http"
        if connection.closed:
            return "closed"
        try:
            await connection.wait(max(0.0, deadline - loop.time()))
        except TimeoutError:
            return "timeout"


class TcpUpstreamListener:
    """A local listener for one TCP upstream: each connection is detected (unless its port
    is opaque), then served as HTTP requests or relayed to one instance (of the upstream, or
    of its failover destination)."""

    def __init__(self, context: "ProxyContext", service: str, http: "OutboundProxy") -> None:
        self.ctx = context
        self.service = service
        self.http = http

    def serve(self, host: str, port: int, limit: ConnectionLimit,
              sock: socket.socket | None = None) -> Acceptor:
        """Listen for the app (on `sock` if given), at most `limit` connections at once; each
        connection is served by `handle`."""
        return listen(host, port, self.handle, self.ctx.connections, limit, sock)

    async def handle(self, connection: Connection) -> None:
        """Detect with the policy in force now (a reload applies to new connections)."""
        settings = self.ctx.traffic.service(self.service).settings
        port = connection.get_extra_info("sockname")[1]
        if port in settings.opaque_ports:
            detection = "skipped"
        else:
            with self.ctx.detecting():
                detection = await sniff(
                    connection, settings.detect_timeout or DEFAULT_DETECT_TIMEOUT
                )
            if detection == "http":  # no await until `handle` holds it as a client connection
                await self.http.handle(connection, fixed_service=self.service)
                return
        await self.relay(*connection.into_streams(), port=port, detection=detection)

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    port: int, detection: str) -> None:
        """Relay one connection (to `port`, of the `detection` verdict) to an instance of the
        service, or of its failover destination, as opaque bytes; logged with the destination
        it went to, or why it went nowhere."""
        started = time.monotonic()
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else "local"
        event = self.ctx.new_event("outbound", client)
        event.service = event.dst_service = self.service
        event.tls = True
        event.src_id = self.ctx.tls.identity_uri
        # in flight from the first await on, so that a drain waits for the connect too
        metrics = self.ctx.observability.metrics
        meter = None
        with self.ctx.request_in_flight():
            try:
                upstream = await self._open_upstream(event)
                fields = {"dst_service": event.dst_service, "upstream": self.service,
                          "instance": event.dst_instance, "port": port,
                          "detection": detection, "client": client}
                if upstream is None:
                    log.info("opaque TCP connection failed",
                             extra={**fields, "reason": error_reason(event.error),
                                    "detail": event.error})
                else:
                    up_reader, up_writer, load = upstream
                    try:
                        log.info("opaque TCP connection", extra=fields)
                        meter = metrics.tcp_meter(event)
                        with self.ctx.tunnelling():
                            await Tunnel(event, meter, plain_is_client=True).relay(
                                reader, writer, up_reader, up_writer
                            )
                    finally:
                        load.pending -= 1  # the tunnel is closed: no longer load on the instance
            finally:
                writer.close()
                (meter or metrics.tcp_meter(event)).close(event.error)
                self.ctx.publish(event, started)

    async def _open_upstream(self, event: RequestEvent) -> Opened | None:
        """An opaque mTLS connection to an instance of the service, or of its failover
        destination, chosen as for an HTTP request (`ProxyContext.to_an_instance`: another
        instance when connecting fails, before any byte of the client's was sent); None when
        there is none (the reason is in `event.error`)."""

        def connect(endpoints: ServiceEndpoints, endpoint: Endpoint) -> Awaitable[Opened]:
            return self._connect(endpoints, endpoint, event)

        try:
            return await self.ctx.to_an_instance(self.service, event, set(), connect)
        except NoEndpoints as none_left:
            event.error = f"{none_left.reason}: {none_left}"[:200]
        except AttemptFailed as failed:
            event.error = str(failed)[:200]
        return None

    async def _connect(
        self, endpoints: ServiceEndpoints, endpoint: Endpoint, event: RequestEvent
    ) -> Opened:
        """`_open` to `endpoint`, seen by the balancer as an outstanding request from the
        connect on (until the tunnel closes: the caller's to end, unless connecting failed),
        its connect and handshake time as the instance's latency."""
        load = endpoint.ewma
        load.pending += 1
        started = time.monotonic()
        try:
            up_reader, up_writer = await self._open(endpoints, endpoint, event)
        except BaseException:
            load.pending -= 1
            raise
        load.observe((time.monotonic() - started) * 1000)
        return up_reader, up_writer, load

    async def _open(
        self, endpoints: ServiceEndpoints, endpoint: Endpoint, event: RequestEvent
    ) -> Streams:
        """An opaque mTLS connection to `endpoint`, an instance of `endpoints` (one that is
        another site's gateway is asked for the service by server name). Its breaker learns
        of it as of an HTTP request: a probe starts with the connect; a refused or timed-out
        connect, a failed handshake, or one whose result is refused (`upstream_refusal`) is a
        failure (AttemptFailed `connect-failure`), a usable connection a success."""
        instance = endpoint.instance
        event.dst_instance, event.dst_addr = instance.instance_id, endpoint.authority
        breaker = endpoint.breaker
        breaker.on_request()
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(
                    instance.address,
                    instance.port,
                    ssl=self.ctx.tls.client_opaque,
                    server_hostname=instance.server_name or endpoints.peer_service,
                ),
                self.ctx.config.timeouts.connect,
            )
        except (TimeoutError, ConnectionError, OSError) as exc:
            breaker.on_failure()
            raise AttemptFailed("connect-failure", f"upstream.connect_failed: {exc}") from None
        except BaseException:  # cut at the drain deadline: no outcome
            breaker.on_abandoned()
            raise
        expected = f"spiffe://{self.ctx.config.trust_domain}/svc/{endpoints.peer_service}"
        refusal = upstream_refusal(up_writer.get_extra_info("ssl_object"), expected, ALPN_OPAQUE)
        if refusal is not None:
            up_writer.close()
            breaker.on_failure()
            raise AttemptFailed("connect-failure", refusal)
        keep_alive(up_writer.get_extra_info("socket"))
        breaker.on_success()
        event.dst_id = expected
        return up_reader, up_writer
