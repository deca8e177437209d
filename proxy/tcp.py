"""Opaque TCP: bytes relayed both ways, half-close passed on, nothing parsed.

On the outbound side each configured TCP upstream gets a local listener;
its connections go over mTLS (ALPN `vmesh-opaque`) to an instance's inbound
port, which relays them to the app there.
"""

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from proxy.tls import PeerIdentityError, peer_identity

if TYPE_CHECKING:
    from proxy.context import ProxyContext

CHUNK = 64 * 1024


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Copy until EOF, then half-close the other side; returns the byte count.

    A TLS stream cannot be half-closed by asyncio (no write_eof): there the end
    of one direction closes the whole connection, so nothing is left hanging.
    """
    total = 0
    try:
        while data := await reader.read(CHUNK):
            total += len(data)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
    except (ConnectionError, OSError):
        writer.close()
    return total


async def pipe_both_ways(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    server_reader: asyncio.StreamReader,
    server_writer: asyncio.StreamWriter,
) -> tuple[int, int]:
    """Relay until both directions ended; returns (bytes from client, bytes to client)."""
    upstream = asyncio.ensure_future(_copy(client_reader, server_writer))
    downstream = asyncio.ensure_future(_copy(server_reader, client_writer))
    try:
        sent, received = await asyncio.gather(upstream, downstream)
    finally:
        for task in (upstream, downstream):
            task.cancel()
        with contextlib.suppress(Exception):
            server_writer.close()
    return sent, received


class TcpUpstreamListener:
    """A local listener for one opaque TCP upstream; each connection goes to one instance."""

    def __init__(self, context: "ProxyContext", service: str) -> None:
        self.ctx = context
        self.service = service

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        peer = writer.get_extra_info("peername")
        event = self.ctx.new_event("outbound", f"{peer[0]}:{peer[1]}" if peer else "local")
        event.dst_service, event.tls = self.service, True
        event.src_id = str(self.ctx.tls.identity)
        try:
            endpoints = await self.ctx.endpoints(self.service)
            endpoint = endpoints.pick()
            if endpoint is None:
                event.error = "no_endpoints"
                return
            instance = endpoint.instance
            event.dst_instance, event.dst_addr = instance.instance_id, instance.authority
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        instance.address,
                        instance.port,
                        ssl=self.ctx.tls.client_opaque,
                        server_hostname=self.service,
                    ),
                    self.ctx.config.timeouts.connect,
                )
                identity = str(peer_identity(up_writer.get_extra_info("ssl_object")))
            except (TimeoutError, ConnectionError, OSError, PeerIdentityError) as exc:
                endpoint.breaker.on_failure()
                event.error = f"upstream.connect_failed: {exc}"[:200]
                return
            expected = f"spiffe://{self.ctx.config.trust_domain}/svc/{self.service}"
            if identity != expected:
                up_writer.close()
                event.error = f"upstream.wrong_identity: {identity}"
                return
            endpoint.breaker.on_success()
            event.dst_id = identity
            with self.ctx.request_in_flight():
                event.bytes_in, event.bytes_out = await pipe_both_ways(
                    reader, writer, up_reader, up_writer
                )
        finally:
            writer.close()
            self.ctx.publish(event, started)
