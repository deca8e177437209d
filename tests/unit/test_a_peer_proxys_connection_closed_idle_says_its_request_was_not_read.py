"""The inbound proxy closes an idle connection from a peer proxy (its drain, its idle timeout)
with a 408 `proxy.idle_closed` first, and hands on nothing that arrives after: a request that
crossed the close on the wire was never read, so the peer's proxy may send it again whatever
its method. The proxy's own 408 is told from any other (an app's, the header timeout's)."""

import asyncio
import socket

import pytest

from proxy.downstream import IDLE_CLOSED_RESPONSE, Downstream
from proxy.http1 import RequestHead, ResponseHead, forwardable_headers
from proxy.relay import closed_unread
from tests.support import connected_pair

_POST = b"POST /orders HTTP/1.1\r\nHost: web\r\ncontent-length: 2\r\n\r\n{}"


def _received_until_closed(peer: socket.socket) -> bytes:
    peer.settimeout(5)
    data = b""
    while chunk := peer.recv(65536):
        data += chunk
    return data


async def _peer_proxy_connection(idle_timeout: float = 30) -> tuple[Downstream, socket.socket]:
    connection, peer = await connected_pair()
    client = Downstream(connection, proxy_name="web inbound", header_timeout=5,
                        idle_timeout=idle_timeout, announces_idle_close=True)
    return client, peer


async def test_an_idle_timeout_tells_the_peer_proxy_before_the_connection_closes() -> None:
    client, peer = await _peer_proxy_connection(idle_timeout=0.05)
    with peer:
        assert await asyncio.wait_for(client.next_request(), 5) is None
        assert await asyncio.to_thread(_received_until_closed, peer) == IDLE_CLOSED_RESPONSE


async def test_a_request_arriving_after_the_close_is_not_handed_on() -> None:
    client, peer = await _peer_proxy_connection()
    with peer:
        waiting = asyncio.create_task(client.next_request())
        await asyncio.sleep(0)  # the task waits for the next request, as between requests
        assert client.waiting
        assert client.close_idle()
        # what a TLS transport still delivers as it shuts down: the request that crossed
        client.connection.data_received(_POST)
        assert await asyncio.wait_for(waiting, 5) is None
        assert await asyncio.to_thread(_received_until_closed, peer) == IDLE_CLOSED_RESPONSE


async def test_a_request_already_in_is_served_instead_of_closed() -> None:
    client, peer = await _peer_proxy_connection()
    with peer:
        waiting = asyncio.create_task(client.next_request())
        await asyncio.sleep(0)
        client.connection.data_received(_POST)  # the task has not run since

        assert client.close_idle() is False
        head = await asyncio.wait_for(waiting, 5)
        assert isinstance(head, RequestHead) and head.target == "/orders"
        client.close()


async def test_a_connection_from_an_app_is_closed_idle_without_a_word() -> None:
    connection, peer = await connected_pair()
    client = Downstream(connection, proxy_name="web outbound", header_timeout=5,
                        idle_timeout=0.05)
    with peer:
        assert await asyncio.wait_for(client.next_request(), 5) is None
        assert await asyncio.to_thread(_received_until_closed, peer) == b""


@pytest.mark.parametrize(("status", "headers", "unread"), [
    (408, [(b"content-length", b"0"), (b"vmesh-error", b"proxy.idle_closed"),
           (b"vmesh-idle-closed", b"1"), (b"connection", b"close, vmesh-idle-closed")], True),
    (408, [(b"vmesh-error", b"http1.header_timeout")], False),
    (408, [(b"vmesh-error", b"proxy.idle_closed")], False),  # an app's, or relayed by one
    (200, [(b"vmesh-idle-closed", b"1")], False),
])
def test_only_the_proxys_idle_close_says_unread(
    status: int, headers: list[tuple[bytes, bytes]], unread: bool,
) -> None:
    assert closed_unread(ResponseHead(status, b"", headers)) is unread


def test_no_app_response_passes_the_word_on() -> None:
    """The proxy's word is hop-by-hop: an app's response (relayed by the inbound proxy) never
    carries it, however spelled."""
    headers = [(b"vmesh-idle-closed", b"1"), (b"vmesh_idle_closed", b"1"), (b"x-app", b"1")]
    assert forwardable_headers(headers) == [(b"x-app", b"1")]
