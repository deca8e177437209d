"""One connection as an asyncio Protocol whose bytes go straight into an HTTP/1.1 reader.

This replaces asyncio streams on the request path: bytes are parsed in
`data_received` as they arrive, and a coroutine awaits parsed events, not
bytes, so a request costs no StreamReader buffer copies, no future per
read and no timer per read: a wait with a deadline only moves the deadline,
and the connection's one timer, armed lazily, checks it when it fires (a
kept-alive connection's idle timeout costs a timer per idle period, not per
request). Reading pauses while unread body bytes pile up, writing waits while
the transport's buffer is full: a slow side holds back the fast one.
"""

import asyncio
from collections import deque
from typing import Any

from proxy.http1 import Event, Http1Error, MessageEnd, RequestReader, ResponseReader
from proxy.lazytimer import LazyTimer

HIGH_WATER = 256 * 1024  # unread body bytes at which reading pauses
_OPAQUE_LIMIT = 2**16


class Connection(asyncio.Protocol):
    """A transport and the reader of its messages (`None` until the protocol is known)."""

    def __init__(self, reader: RequestReader | ResponseReader | None = None) -> None:
        self.reader = reader
        self.transport: asyncio.Transport | None = None
        self._since_idle = 0
        self._loop = asyncio.get_running_loop()
        self._early = bytearray()  # bytes that came before a reader was set
        self._events: deque[Event] | None = reader.events if reader is not None else None
        self._unread = 0
        self._eof = False
        self._error: Http1Error | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer = LazyTimer(self._loop, self._time_out)  # the current wait's deadline
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._since_idle += len(data)
        if self.reader is None:
            self._early += data
            self._wake()
            return
        self._feed(data)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # keep a plain connection half-open so the answer can still be written; TLS cannot
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        self._timer.cancel()
        drain, self._drain_waiter = self._drain_waiter, None
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain, self._drain_waiter = self._drain_waiter, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- reading -------------------------------------------------------------------------

    @property
    def early(self) -> bytes:
        """The bytes received before a reader was set (what protocol detection looks at)."""
        return bytes(self._early)

    def start(self, reader: RequestReader | ResponseReader) -> None:
        """Parse with `reader` from now on, beginning with any bytes that came before."""
        self.reader = reader
        self._events = reader.events
        if self._early:
            early, self._early = bytes(self._early), bytearray()
            self._feed(early)

    def _feed(self, data: bytes) -> None:
        if self._error is None:
            try:
                self.reader.feed(data)  # type: ignore[union-attr]
            except Http1Error as exc:
                self._error = exc
                # whole messages before the bad one are still served; what there is of the
                # bad one is never handed on (its head would reach the app)
                events = self._events
                while events and events[-1].__class__ is not MessageEnd:
                    events.pop()
        self._unread += len(data)
        if self._unread > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        waiter = self._waiter  # _wake(), inline: this runs for every read
        if waiter is not None:
            self._waiter = None
            self._timer.clear()
            if not waiter.done():
                waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._timer.clear()
            if not waiter.done():
                waiter.set_result(None)

    def mark_idle(self) -> None:
        """The connection goes idle: bytes from now on were sent unasked."""
        self._since_idle = 0

    @property
    def settled(self) -> bool:
        """Open, between messages: no parsed event or error waiting, no message begun. Bytes
        a peer sent past the message it owed (a response longer than it said) would
        otherwise pass for the answer to the next request, a stranger's maybe."""
        return not (self._eof or self._error is not None or self._events
                    or (self.reader is not None and self.reader.in_message))

    def quiet_since_idle(self) -> bool:
        """Settled, and no byte arrived since `mark_idle` (what an idle peer sends on its own
        would pass for the next answer)."""
        return not self._since_idle and self.settled

    async def next_event(self, within: float | None = None) -> Event | None:
        """The next parsed event; None once the peer has closed and every event is taken.

        Raises the `Http1Error` of bad framing, and `TimeoutError` when nothing new
        arrives within `within` seconds.
        """
        while True:
            event = self.take_event()
            if event is not None or self._eof:
                return event
            await self.wait(within)

    def take_event(self) -> Event | None:
        """The next parsed event if there is one (never waits); raises bad framing's error."""
        events = self._events
        assert events is not None, "start() the connection with a reader first"
        if events:  # whole messages parsed before bad framing are served first
            event = events.popleft()
            if event.__class__ is bytes:
                self._unread -= len(event)  # type: ignore[arg-type]
            return event
        if self._error is not None:
            raise self._error  # bad framing ends the connection
        self._unread = 0
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return None

    def wait(self, within: float | None) -> "asyncio.Future[None]":
        """A future done when more bytes (or the end) arrive, failed with TimeoutError after
        `within` seconds. (A plain method, not a coroutine: it runs twice a request, and the
        future is all a task needs to await. Whatever completes the future also clears it
        and its deadline; a task cancelled meanwhile leaves a cancelled one, which the next
        wait replaces.)"""
        waiter = self._loop.create_future()
        if self._eof:
            waiter.set_result(None)
            return waiter
        self._waiter = waiter
        if within is None:
            self._timer.clear()
        else:
            self._timer.set(within)
        return waiter

    def _time_out(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    @property
    def closed(self) -> bool:
        """The peer closed (or the connection was lost): nothing more will arrive."""
        return self._eof

    # --- writing -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    @property
    def must_drain(self) -> bool:
        """True when `drain()` has work: the write buffer is full (wait), or the transport is
        closing (raise). Checked first, it spares the common case a coroutine."""
        return self._write_paused or self.transport is None or self.transport.is_closing()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        if not self._write_paused:
            return
        self._drain_waiter = self._loop.create_future()
        await self._drain_waiter

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default) if self.transport else default

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- handing over --------------------------------------------------------------------

    def into_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Hand the connection to asyncio streams (opaque TCP), with the bytes read so far."""
        assert self.transport is not None and self.reader is None
        stream_reader = asyncio.StreamReader(limit=_OPAQUE_LIMIT)
        protocol = asyncio.StreamReaderProtocol(stream_reader)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if self._early:
            stream_reader.feed_data(bytes(self._early))
            self._early = bytearray()
        if self._eof:
            stream_reader.feed_eof()
        writer = asyncio.StreamWriter(self.transport, protocol, stream_reader, self._loop)
        return stream_reader, writer
