"""A proxy that begins to drain while a client connection is between requests still serves
the request the client may be sending (its last response said keep-alive, or it had none
yet), with `connection: close`; a client that sends nothing within the grace is let go."""

import asyncio
import socket

from proxy.downstream import Downstream
from proxy.http1 import RequestHead
from tests.support import connected_pair


async def _draining_client() -> tuple[Downstream, socket.socket]:
    connection, theirs = await connected_pair()
    client = Downstream(connection, proxy_name="front outbound", header_timeout=5,
                        idle_timeout=30)
    client.drain()  # the drain begins before the client's next request arrives
    return client, theirs


async def test_the_request_a_client_sends_as_the_drain_begins_is_served_with_close() -> None:
    client, peer = await _draining_client()
    with peer:
        peer.sendall(b"GET /late HTTP/1.1\r\nHost: web\r\n\r\n")  # not read by the proxy yet
        head = await asyncio.wait_for(client.next_request(), 5)
        assert isinstance(head, RequestHead) and head.target == "/late"
        assert client.may_keep_alive is False  # its response says `connection: close`
        client.close()


async def test_a_draining_client_that_sends_nothing_is_let_go_after_the_grace() -> None:
    client, peer = await _draining_client()
    with peer:
        assert await asyncio.wait_for(client.next_request(), 5) is None
        client.close()
