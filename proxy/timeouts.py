"""Request and per-try deadlines: how long the next attempt of a request may take.

`request` bounds the whole exchange including retries and backoff; `per_try`
bounds each attempt. The next attempt gets the smaller of the two remaining
budgets; when the request deadline has passed the request ends with 504.

`TaskTimer` enforces them: one timer per task (a connection's), moved by each
bound instead of a timer made and cancelled per request as `asyncio.timeout`
does (`proxy.lazytimer`).
"""

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

from proxy.lazytimer import LazyTimer
from vm_mesh.policy.model import Timeouts

REQUEST_TIMEOUT = "timeout.request"
PER_TRY_TIMEOUT = "timeout.per_try"


class Deadline:
    """The clock of one request, started when the request arrived."""

    def __init__(self, timeouts: Timeouts, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeouts = timeouts
        self._clock = clock
        self.started = clock()

    def remaining(self) -> float | None:
        """Seconds left of the request timeout (None: no request timeout)."""
        if self.timeouts.request is None:
            return None
        return max(0.0, self.started + self.timeouts.request - self._clock())

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def next_try(self) -> tuple[float | None, str]:
        """The timeout of the next attempt and the reason string used when it fires."""
        remaining = self.remaining()
        per_try = self.timeouts.per_try
        if per_try is not None and (remaining is None or per_try < remaining):
            return per_try, PER_TRY_TIMEOUT
        return remaining, REQUEST_TIMEOUT


class TaskTimer:
    """Cancels its task when a bound runs out; `with timer.bound(delay):` then raises
    TimeoutError, as `asyncio.timeout(delay)` would.

    Bounds follow each other in the task (the requests of one connection), so they share
    one `LazyTimer`: a request costs moving a deadline, not a timer.
    """

    __slots__ = ("_cancelling", "_fired", "_task", "_timer")

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None, "a TaskTimer bounds the task that makes it"
        self._task = task
        self._timer = LazyTimer(asyncio.get_running_loop(), self._expire)
        self._fired = False
        self._cancelling = 0

    def bound(self, delay: float) -> "TaskTimer":
        """Bound the `with` block to `delay` seconds from now (bounds do not nest)."""
        self._fired = False
        self._cancelling = self._task.cancelling()
        self._timer.set(delay)
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.clear()
        if self._fired:
            self._fired = False
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _expire(self) -> None:
        self._fired = True
        self._task.cancel()

    def close(self) -> None:
        """The task is done with bounds: drop the timer."""
        self._timer.cancel()
