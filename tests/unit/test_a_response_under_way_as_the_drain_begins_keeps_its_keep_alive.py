"""A drain that begins while a response is on its way (its head, saying keep-alive, already
sent) keeps that promise: the connection stays open for the client's next request, which is
answered with `connection: close`, instead of being closed under a client about to reuse it."""

import asyncio
import logging
import socket

from proxy.downstream import Downstream
from proxy.events import RequestEvent
from proxy.http1 import ResponseHead
from proxy.relay import Response, relay_response
from proxy.upstream import Pool, Upstream
from tests.support import connected_pair

_RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


async def _unused_connect(key: str) -> Upstream:
    raise AssertionError(f"no connection is opened in this test ({key})")


def _received_head(peer: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += peer.recv(4096)
    return data.partition(b"\r\n\r\n")[0].lower()


async def test_a_response_whose_head_said_keep_alive_leaves_room_for_one_more_request() -> None:
    downstream, client_peer = await connected_pair()
    upstream_connection, app_peer = await connected_pair()
    client = Downstream(downstream, proxy_name="web inbound", header_timeout=5, idle_timeout=30)
    upstream = Upstream("app", upstream_connection)
    with client_peer, app_peer:
        client_peer.sendall(b"GET /first HTTP/1.1\r\nHost: web\r\n\r\n")
        request = await asyncio.wait_for(client.next_request(), 5)
        assert request is not None
        upstream.responses.expect(request.method)
        app_peer.sendall(_RESPONSE_HEAD)  # the body comes later
        head = await asyncio.wait_for(upstream.next_event(), 5)
        assert isinstance(head, ResponseHead)
        event = RequestEvent(ts=0.0, id="t:1", direction="inbound", src_addr="test")
        relaying = asyncio.create_task(relay_response(
            Response(head, upstream), client, request, event, Pool(_unused_connect),
            idle_timeout=5, log=logging.getLogger("test"),
        ))
        first_head = await asyncio.to_thread(_received_head, client_peer)
        assert b"connection: close" not in first_head  # the client may reuse the connection

        client.drain()  # the proxy begins to drain while the body is still on its way
        app_peer.sendall(b"hello")

        assert await asyncio.wait_for(relaying, 5) is True  # the connection is kept...
        client_peer.sendall(b"GET /second HTTP/1.1\r\nHost: web\r\n\r\n")
        second = await asyncio.wait_for(client.next_request(), 5)
        assert second is not None and second.target == "/second"
        assert client.may_keep_alive is False  # ...for one request, answered with close
        client.close()
        upstream.close()


async def test_an_error_answer_during_a_drain_says_connection_close() -> None:
    downstream, client_peer = await connected_pair()
    client = Downstream(downstream, proxy_name="web inbound", header_timeout=5, idle_timeout=30)
    with client_peer:
        client_peer.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        assert await asyncio.wait_for(client.next_request(), 5) is not None
        client.drain()
        await client.send_error(502, "app.connect_failed", "the app is down", close=False)

        assert b"connection: close" in await asyncio.to_thread(_received_head, client_peer)
        assert client.request_keep_alive is False
        client.close()
