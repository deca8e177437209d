"""A bounded, lossy queue from the data path to one slow reader (a tap or log follower).

The writer never waits: when the reader falls behind, the oldest items are
dropped and counted, and the reader is told how many it lost.
"""

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedFeed(Generic[T]):
    """Items for one reader; `offer` is safe from any thread, `batch` runs on the reader's loop."""

    def __init__(self, capacity: int = 1000) -> None:
        self._items: deque[T] = deque(maxlen=capacity)
        self._dropped = 0
        self._loop = asyncio.get_running_loop()
        self._owner_thread = threading.get_ident()
        self._ready = asyncio.Event()

    def offer(self, item: T) -> None:
        if len(self._items) == self._items.maxlen:
            self._dropped += 1
        self._items.append(item)
        self._wake()

    def drop(self) -> None:
        """Count an item that was refused before it was queued (rate limit); a waiting reader
        is told at once, even if no item follows."""
        self._dropped += 1
        self._wake()

    def _wake(self) -> None:
        if self._ready.is_set():
            return  # the reader is already woken; it takes everything queued so far
        if threading.get_ident() == self._owner_thread:
            self._ready.set()  # on the loop: no self-pipe write per item
            return
        with contextlib.suppress(RuntimeError):  # the reader's loop is gone: nobody to wake
            self._loop.call_soon_threadsafe(self._ready.set)

    async def batch(self) -> tuple[list[T], int]:
        """Wait for items; return them with the number dropped since the last batch."""
        while not self._items and not self._dropped:
            self._ready.clear()
            if self._items or self._dropped:
                break  # offered between the check and the clear: its wake-up was skipped
            await self._ready.wait()
        items = list(self._items)
        self._items.clear()
        dropped, self._dropped = self._dropped, 0
        return items, dropped
