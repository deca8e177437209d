"""One timer following a deadline that moves often, mostly later (a connection's next idle
timeout, a task's next request bound).

Moving the deadline later costs no timer: the one armed stays, and when it fires
early it re-arms for the deadline in force then. Only an earlier deadline, or one
after the timer has fired, arms a new timer. `on_expiry` runs once the deadline has
passed with no one having cleared it.
"""

import asyncio
from collections.abc import Callable

_SLACK = 0.001  # a timer may fire this early (the loop's clock has millisecond steps)


class LazyTimer:
    """Calls `on_expiry` when the deadline `set` last passes, unless it is `clear`ed first."""

    __slots__ = ("_armed_for", "_deadline", "_handle", "_loop", "_on_expiry")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expiry: Callable[[], None]) -> None:
        self._loop = loop
        self._on_expiry = on_expiry
        self._deadline: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # when the armed timer fires (its `when()`, without the call)

    def set(self, delay: float) -> None:
        """The deadline is `delay` seconds from now."""
        self._deadline = deadline = self._loop.time() + delay
        handle = self._handle
        if handle is None or self._armed_for > deadline:
            if handle is not None:
                handle.cancel()
            self._arm(deadline)

    def clear(self) -> None:
        """No deadline for now; the armed timer, if any, stays for the next one."""
        self._deadline = None

    def cancel(self) -> None:
        """No deadline any more, and no timer."""
        self._deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return  # no deadline now: the next `set` arms the timer again
        if self._loop.time() + _SLACK < deadline:
            self._arm(deadline)
            return
        self._deadline = None
        self._on_expiry()

    def _arm(self, deadline: float) -> None:
        self._handle = self._loop.call_at(deadline, self._check)
        self._armed_for = deadline
