"""The client side of a proxy connection: requests in, responses out, with timeouts.

Idle keep-alive connections are closed silently after `idle_timeout`; a
request whose head does not arrive within `header_timeout` of its first
byte gets 408 (slowloris). Bodies are read as they arrive, never whole. A
client that reads nothing of a response for `idle_timeout` while the proxy has
more to send is cut off, so it cannot hold the upstream connection for ever.
When the proxy drains, a connection ends after its next response (which says
`connection: close`), or once it has been idle for `DRAIN_IDLE_GRACE_S`.

A connection closed idle hands on nothing that arrives after (a request that crossed the
close on the wire). The inbound proxy says so first, to the peer proxy at the other end:
`IDLE_CLOSED_RESPONSE`, a 408 (RFC 9110 15.5.9: the request in transit, if any, may be
sent again), tells it that whatever request it sent on the connection was never read.
"""

import asyncio
import logging
import time

from proxy.connection import Connection
from proxy.http1 import IDLE_CLOSED_HEADER, Http1Error, MessageEnd, RequestHead, RequestReader
from vm_mesh.defaults import ERROR_HEADER

log = logging.getLogger("vmesh.proxy")

# Closing an idle keep-alive connection races the client's next request on it, which would
# fail: a connection used this recently is more likely to carry another request soon than
# to stay silent, so on drain it gets this long to do so and hear `connection: close`.
DRAIN_IDLE_GRACE_S = 0.5

# What the inbound proxy sends on a connection it closes idle: a request crossing it was not
# read, so the peer proxy may send it again, whatever its method (`relay.closed_unread`). The
# word is the hop-by-hop `IDLE_CLOSED_HEADER`, which only a proxy sends; `vmesh-error` tells
# an app that gets this 408 (its body could not go again) why.
IDLE_CLOSED = "proxy.idle_closed"
_IDLE_CLOSED = IDLE_CLOSED_HEADER.decode()
IDLE_CLOSED_RESPONSE = (
    f"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n{ERROR_HEADER}: {IDLE_CLOSED}\r\n"
    f"{_IDLE_CLOSED}: 1\r\nconnection: close, {_IDLE_CLOSED}\r\n\r\n"
).encode()


class Downstream:
    """One accepted connection carrying HTTP/1.1 requests."""

    def __init__(
        self,
        connection: Connection,
        *,
        proxy_name: str,
        header_timeout: float,
        idle_timeout: float,
        announces_idle_close: bool = False,
    ) -> None:
        """`announces_idle_close`: send `IDLE_CLOSED_RESPONSE` before closing the connection
        idle (the client is a peer proxy, which knows it)."""
        self.connection = connection
        if connection.reader is None:
            connection.start(RequestReader())
        self.proxy_name = proxy_name
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.request_keep_alive = True  # the client's wish; the drain is read in may_keep_alive
        self.body_bytes = 0  # body bytes of the current request handed on so far
        self.waiting = False  # between requests, with no byte of the next one yet
        self.idle_since = 0.0  # time.monotonic() when it last began waiting
        self.draining = False
        self.announces_idle_close = announces_idle_close
        self.closed_idle = False  # by `close_idle`: nothing more is handed on
        peer = connection.get_extra_info("peername")
        self.peer_addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "local"

    async def next_request(self) -> RequestHead | None:
        """The next request head; None when the client closed or idled out."""
        connection = self.connection
        deadline: float | None = None
        while True:
            event = connection.take_event()
            if isinstance(event, RequestHead):
                self.request_keep_alive = event.keep_alive
                self.body_bytes = 0
                return event
            if event is not None:
                continue  # leftovers of a message already answered
            if connection.closed:
                return None
            if deadline is None and connection.reader.in_message:  # type: ignore[union-attr]
                deadline = asyncio.get_running_loop().time() + self.header_timeout
            self.waiting = deadline is None
            if self.waiting:
                self.idle_since = time.monotonic()
            try:
                if deadline is None:
                    # draining: the last response said keep-alive (it left before the drain
                    # began), or none was sent yet (a connection accepted meanwhile), so the
                    # client may be sending a request now; it gets the grace to, as an idle one
                    await connection.wait(
                        DRAIN_IDLE_GRACE_S if self.draining else self.idle_timeout
                    )
                else:
                    await connection.wait(max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                if deadline is not None:
                    raise Http1Error(
                        408, "http1.header_timeout", "the request head did not arrive in time"
                    ) from None
                if self.close_idle():
                    return None
            finally:
                self.waiting = False
            if self.closed_idle:  # by `drain` meanwhile: a request that came since is dropped
                return None

    @property
    def may_keep_alive(self) -> bool:
        """Whether a response whose head is built now may leave the connection open: the
        client asked for it and the proxy is not draining. Read once per head, so a drain
        that begins later does not take back a keep-alive already promised."""
        return self.request_keep_alive and not self.draining

    def drain(self) -> None:
        """The proxy is stopping: close after the current or next response (which says
        `connection: close`), or once idle for `DRAIN_IDLE_GRACE_S`, so that no client sends
        a request that would be cut. A response whose head already went out keeps the
        keep-alive it promised: the client's next request is then answered with close."""
        self.draining = True
        if self.waiting:
            left = self.idle_since + DRAIN_IDLE_GRACE_S - time.monotonic()
            if left <= 0:
                self.close_idle()
            else:
                asyncio.get_running_loop().call_later(left, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.waiting:
            self.close_idle()

    def close_idle(self) -> bool:
        """Close the connection between requests, unless bytes of the next one are in (False:
        that request is served). From then on nothing that arrives is handed on, so a peer
        proxy told so (`announces_idle_close`) may send again the request it has in transit."""
        if self.closed_idle:
            return True
        connection = self.connection
        if not connection.settled:
            return False
        self.closed_idle = True
        transport = connection.transport
        if self.announces_idle_close and transport is not None and not transport.is_closing():
            connection.write(IDLE_CLOSED_RESPONSE)
        connection.close()
        return True

    def body(self) -> "RequestBody":
        """The current request's body chunks, as they arrive."""
        return RequestBody(self)

    async def read_body(self) -> bytes:
        """The whole body of the current request (for small, length-delimited bodies)."""
        return b"".join([chunk async for chunk in self.body()])

    async def write(self, data: bytes) -> None:
        """Send `data`; waits while the client's buffer is full, `idle_timeout` at most."""
        connection = self.connection
        connection.write(data)
        if connection.must_drain:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    await connection.drain()
            except TimeoutError:
                log.info("client stopped reading; connection cut",
                         extra={"reason": "client.write_timeout", "client": self.peer_addr})
                connection.abort()
                raise ConnectionResetError(
                    f"the client read nothing for {self.idle_timeout:g}s"
                ) from None

    async def send_error(self, status: int, reason: str, detail: str, *, close: bool) -> int:
        """A short error response naming this proxy and the cause; returns bytes written. It
        says `connection: close` when asked to, or when the connection ends after it anyway."""
        close = close or not self.may_keep_alive
        self.request_keep_alive = not close
        response, body_size = self._error_response(status, reason, detail, close)
        await self.write(response)
        return body_size

    def end_with_error(self, status: int, reason: str, detail: str) -> None:
        """Send a short error response (`send_error`'s, saying `connection: close`) and close
        the connection, without waiting for the client to read it: the proxy is stopping."""
        self.request_keep_alive = False
        connection = self.connection
        transport = connection.transport
        if transport is not None and not transport.is_closing():
            connection.write(self._error_response(status, reason, detail, close=True)[0])
        connection.close()

    def _error_response(
        self, status: int, reason: str, detail: str, close: bool
    ) -> tuple[bytes, int]:
        """The bytes of an error response naming this proxy and the cause, and its body's size."""
        body = f"vmesh {self.proxy_name}: {detail} ({reason})\n".encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"content-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            f"{ERROR_HEADER}: {reason}\r\n" + ("connection: close\r\n" if close else "") + "\r\n"
        ).encode()
        return head + body, len(body)

    def close(self) -> None:
        self.connection.close()


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


class RequestBody:
    """The body chunks of a client's current request, as they arrive: an async iterator
    (a class, not an async generator, so that mypyc compiles it)."""

    def __init__(self, client: Downstream) -> None:
        self._client = client
        self._ended = False

    def __aiter__(self) -> "RequestBody":
        return self

    async def __anext__(self) -> bytes:
        client = self._client
        while not self._ended:
            try:
                event = await client.connection.next_event(client.idle_timeout)
            except TimeoutError:
                raise Http1Error(408, "http1.body_timeout", "the request body stalled") from None
            if isinstance(event, MessageEnd):
                client.request_keep_alive = event.keep_alive
                self._ended = True
            elif event is None:
                raise ConnectionResetError("client closed mid-body")
            elif isinstance(event, bytes):
                client.body_bytes += len(event)
                return event
        raise StopAsyncIteration
