"""Request and per-try deadlines: how long the next attempt of a request may take.

`request` bounds the whole exchange including retries and backoff; `per_try`
bounds each attempt. The next attempt gets the smaller of the two remaining
budgets; when the request deadline has passed the request ends with 504.
"""

import time
from collections.abc import Callable

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
