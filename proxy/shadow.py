"""Sending mirrored copies in the background, so that a shadow can never hurt the primary.

Each copy runs as its own task with a timeout; the primary never awaits it.
At most `max_in_flight` copies run at once: beyond that copies are dropped
(and counted), so a slow shadow cannot pile up memory or connections.
Failures of a copy are counted, never raised.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

log = logging.getLogger("vmesh.proxy.mirror")

# Outcome labels for shadow metrics.
SENT = "sent"
DROPPED = "dropped"
FAILED = "failed"
TIMED_OUT = "timeout"


class ShadowDispatcher:
    """Runs copies to shadow services in the background, bounded in number and time."""

    def __init__(
        self,
        max_in_flight: int = 64,
        timeout: float = 5.0,
        on_outcome: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.counts: Counter[str] = Counter()
        self._on_outcome = on_outcome
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, service: str, shadow: str, send: Callable[[], Awaitable[object]]) -> bool:
        """Start sending one copy of a request to `service`; False when too many are in flight."""
        if len(self._tasks) >= self.max_in_flight:
            self._record(service, shadow, DROPPED)
            return False
        task = asyncio.get_running_loop().create_task(self._run(service, shadow, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, service: str, shadow: str, send: Callable[[], Awaitable[object]]) -> None:
        try:
            await asyncio.wait_for(send(), self.timeout)
        except TimeoutError:
            self._record(service, shadow, TIMED_OUT)
        except Exception as exc:  # a shadow's failure is data, never the primary's problem
            log.debug("mirror copy failed", extra={"shadow": shadow, "error": repr(exc)})
            self._record(service, shadow, FAILED)
        else:
            self._record(service, shadow, SENT)

    def _record(self, service: str, shadow: str, outcome: str) -> None:
        self.counts[outcome] += 1
        if self._on_outcome is not None:
            self._on_outcome(service, shadow, outcome)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every copy started so far has finished (each is bounded by `timeout`)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel copies still running (on shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __repr__(self) -> str:
        counts = " ".join(f"{k}={self.counts[k]}" for k in (SENT, FAILED, TIMED_OUT, DROPPED))
        return f"<ShadowDispatcher in_flight={self.in_flight} {counts}>"
