"""Many NDJSON streams (tap, logs) merged into one bounded queue.

One task per source reads its stream; items go into a bounded queue. When
the consumer falls behind, the oldest items are dropped and counted rather
than letting memory grow. A source whose stream fails is reported and
retried after a pause that doubles with each failure in a row (unless
retrying cannot help); the others keep flowing. For the CLI twins a certificate
that does not verify before the source's stream was ever open is a configuration
error, not retried either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from console.client import AdminClient, AdminError, OperatorCredentials
from console.log_cursor import LogCursor
from console.sources import Source
from vm_mesh.backoff import doubled

QUEUE_BOUND = 10_000

RETRY_FIRST_S = 1.0  # after a stream ended or failed; doubled with each failure in a row
RETRY_MAX_S = 16.0


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One object from one source's stream."""

    source: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamGap:
    """The source dropped `dropped` items it could not send in time (`{"dropped": N}`)."""

    source: str
    dropped: int


@dataclass(frozen=True, slots=True)
class StreamOpen:
    """The source accepted the stream (again, after a failure): its items follow."""

    source: str


@dataclass(frozen=True, slots=True)
class StreamFailure:
    """A source's stream broke; `final` when retrying cannot help (see `is_final`)."""

    source: str
    reason: str
    detail: str
    final: bool = False


def is_final(error: AdminError) -> bool:
    """Failures that the same request will meet again: 4xx answers, no operator certificate,
    a peer that is no vmesh proxy. (A TLS failure is not: a proxy restarting mid-handshake,
    a rotation under way or an operator certificate renewed since all pass; nor a 503 such
    as `admin.too_many_streams`: a stream may free up.)"""
    return (error.status is not None and 400 <= error.status < 500) or error.reason in (
        "admin.operator_cert_missing", "admin.peer_identity")


StreamEvent = StreamItem | StreamGap | StreamOpen | StreamFailure


async def follow_source(source: Source, path: str, params: dict[str, str],
                        credentials: OperatorCredentials | None,
                        emit: Callable[[StreamEvent], None],
                        *, retry: bool = True, cursor: LogCursor | None = None,
                        untrusted_final: bool = False) -> None:
    """Read `path` from one source forever (or once when `retry` is False), opening it again
    RETRY_FIRST_S after it ended or failed, twice as long after each failure in a row up to
    RETRY_MAX_S. With a `cursor` (a followed log) it goes on from the last line delivered.
    `untrusted_final`: give up when the source's certificate does not verify before its
    stream was ever open (after, a rotation may be under way: that is retried)."""
    in_a_row = 0  # attempts since the stream was last open
    ever_open = False

    def opened() -> None:
        nonlocal in_a_row, ever_open
        in_a_row, ever_open = 0, True
        emit(StreamOpen(source.name))

    while True:
        try:
            query = cursor.params(params) if cursor else params
            async with AdminClient(source, credentials) as client:
                async for data in client.stream(path, query, opened=opened):
                    dropped = data.get("dropped")
                    if len(data) == 1 and isinstance(dropped, int):
                        emit(StreamGap(source.name, dropped))
                    elif cursor is None or cursor.fresh(data):
                        emit(StreamItem(source.name, data))
            if not retry:
                return
        except AdminError as exc:
            final = is_final(exc) or (
                untrusted_final and not ever_open and exc.reason == "admin.tls_untrusted")
            emit(StreamFailure(source.name, exc.reason, exc.detail, final))
            if final or not retry:
                return
        await asyncio.sleep(doubled(RETRY_FIRST_S, RETRY_MAX_S, in_a_row))
        in_a_row += 1


class MergedStream:
    """The items of `path` from every source, through one bounded queue."""

    def __init__(self, sources: Sequence[Source], path: str, params: dict[str, str],
                 credentials: OperatorCredentials | None = None, *,
                 bound: int = QUEUE_BOUND, retry: bool = True, resume: bool = False,
                 untrusted_final: bool = False) -> None:
        """`resume`: a followed log, which goes on from each source's last line delivered;
        `untrusted_final`: see `follow_source`."""
        self._sources = list(sources)
        self._path, self._params, self._credentials = path, params, credentials
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue(bound)
        self._retry = retry
        self._resume = resume
        self._untrusted_final = untrusted_final
        self.dropped = 0

    def _emit(self, item: StreamEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        tasks = [
            asyncio.create_task(follow_source(s, self._path, self._params, self._credentials,
                                              self._emit, retry=self._retry,
                                              cursor=LogCursor() if self._resume else None,
                                              untrusted_final=self._untrusted_final))
            for s in self._sources
        ]
        try:
            while True:
                getter = asyncio.ensure_future(self._queue.get())
                running = [t for t in tasks if not t.done()]
                if not running and self._queue.empty():
                    getter.cancel()
                    return
                done, _ = await asyncio.wait([getter, *running],
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
