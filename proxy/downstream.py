"""The client side of a proxy connection: requests in, responses out, with timeouts.

Idle keep-alive connections are closed silently after `idle_timeout`; a
request whose head does not arrive within `header_timeout` of its first
byte gets 408 (slowloris). Bodies are read as they arrive, never whole.
"""

import asyncio
from collections.abc import AsyncIterator

from proxy.http1 import Http1Error, MessageEnd, RequestHead, RequestReader
from vm_mesh.defaults import ERROR_HEADER

READ_SIZE = 64 * 1024


class Downstream:
    """One accepted connection carrying HTTP/1.1 requests."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        proxy_name: str,
        header_timeout: float,
        idle_timeout: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.proxy_name = proxy_name
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.parser = RequestReader()
        self.request_keep_alive = True
        self.bytes_read = 0
        self.body_bytes = 0  # body bytes of the current request handed on so far
        peer = writer.get_extra_info("peername")
        self.peer_addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "local"

    async def _read(self, within: float) -> bool:
        """Read and parse more bytes; False on EOF."""
        async with asyncio.timeout(within):  # no extra task per read, unlike wait_for
            data = await self.reader.read(READ_SIZE)
        if not data:
            return False
        self.bytes_read += len(data)
        self.parser.feed(data)
        return True

    async def next_request(self) -> RequestHead | None:
        """The next request head; None when the client closed or idled out."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            event = self.parser.next_event()
            if isinstance(event, RequestHead):
                self.request_keep_alive = event.keep_alive
                self.body_bytes = 0
                return event
            if event is not None:
                continue  # leftovers of a message already answered
            if deadline is None and self.parser.in_message:
                deadline = loop.time() + self.header_timeout
            try:
                if deadline is None:
                    if not await self._read(self.idle_timeout):
                        return None
                    continue
                if not await self._read(max(0.0, deadline - loop.time())):
                    return None
            except TimeoutError:
                if deadline is None:
                    return None
                raise Http1Error(
                    408, "http1.header_timeout", "the request head did not arrive in time"
                ) from None

    async def body(self) -> AsyncIterator[bytes]:
        """The current request's body chunks, as they arrive."""
        while True:
            event = self.parser.next_event()
            if isinstance(event, MessageEnd):
                self.request_keep_alive = event.keep_alive
                return
            if isinstance(event, bytes):
                self.body_bytes += len(event)
                yield event
                continue
            if event is None:
                try:
                    if not await self._read(self.idle_timeout):
                        raise ConnectionResetError("client closed mid-body")
                except TimeoutError:
                    raise Http1Error(
                        408, "http1.body_timeout", "the request body stalled"
                    ) from None

    async def read_body(self) -> bytes:
        """The whole body of the current request (for small, length-delimited bodies)."""
        return b"".join([chunk async for chunk in self.body()])

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_error(self, status: int, reason: str, detail: str, *, close: bool) -> int:
        """A short error response naming this proxy and the cause; returns bytes written."""
        body = f"vmesh {self.proxy_name}: {detail} ({reason})\n".encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"content-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            f"{ERROR_HEADER}: {reason}\r\n" + ("connection: close\r\n" if close else "") + "\r\n"
        ).encode()
        await self.write(head + body)
        return len(body)

    def close(self) -> None:
        self.writer.close()


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
