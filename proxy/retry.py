"""Retry decisions and the retry budget (the Finagle/Linkerd design).

A retry happens only when the route opts in, the method is idempotent (unless
the route lists methods), the body was small enough to keep (64 KiB), the
outcome is one the route retries on, attempts remain, and the budget has
room. The budget admits retries up to `ratio` of the requests seen in the
last `window` plus a reserve of `min_per_second * window`, so under a full
outage the extra load is bounded by that ratio: retries can never multiply
an outage.
"""

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vm_mesh.backoff import full_jitter
from vm_mesh.policy.model import MAX_REPLAY_BODY, Retry
from vm_mesh.policy.model import RetryBudget as RetryBudgetSpec

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# A request that carries this header is safe to repeat whatever its method (IETF httpapi
# draft "The Idempotency-Key HTTP Header Field"): its server executes it once per key.
IDEMPOTENCY_KEY = b"idempotency-key"
GATEWAY_ERRORS = frozenset({502, 503, 504})

CONNECT_FAILURE = "connect-failure"
RESET = "reset"
# What one attempt ended with: a response status, or a failure before any response.
Outcome = int | str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry settings of one route, as decisions."""

    spec: Retry

    def method_allowed(self, method: str) -> bool:
        allowed = self.spec.methods if self.spec.methods is not None else IDEMPOTENT_METHODS
        return method in allowed

    def retries_on(self, outcome: Outcome) -> bool:
        """True when the route's `on` list covers this outcome."""
        for condition in self.spec.on:
            if condition == outcome:
                return True
            if isinstance(outcome, int):
                if condition == "5xx" and 500 <= outcome <= 599:
                    return True
                if condition == "gateway-error" and outcome in GATEWAY_ERRORS:
                    return True
        return False

    def replayable(self, method: str, body_size: int | None) -> bool:
        """Whether a request may be retried at all: method and a body we could keep."""
        return (
            self.method_allowed(method) and body_size is not None and body_size <= MAX_REPLAY_BODY
        )

    def should_retry(
        self, retries_done: int, method: str, body_size: int | None, outcome: Outcome
    ) -> bool:
        """Retry after this outcome? (The budget is asked separately, last.)"""
        return (
            retries_done < self.spec.attempts
            and self.replayable(method, body_size)
            and self.retries_on(outcome)
        )

    def backoff(self, retries_done: int, rng: random.Random) -> float:
        """Seconds to wait before the next try: full jitter over an exponential ceiling."""
        return full_jitter(self.spec.backoff.base, self.spec.backoff.max, retries_done, rng)


def resend_on_new_connection(
    method: str, has_idempotency_key: bool, body_repeatable: bool
) -> bool:
    """Whether a request that failed without a response on a pooled (reused) connection may
    go once more on a new one, as Go's net/http Transport and hyper decide.

    The usual cause is harmless (the peer closed the idle connection as the request went
    out), but the peer may also have passed the request to its app and then died: sending
    it again could execute it twice. So only a request safe to repeat goes again: an
    idempotent method (RFC 9110 9.2.2) or an `Idempotency-Key`, with a body that can be sent
    again. (The other case they resend, a request of which nothing was written, never
    arises here: a pooled connection known to be closed is not used, `Pool.take`.)
    """
    return body_repeatable and (method in IDEMPOTENT_METHODS or has_idempotency_key)


class RetryBudget:
    """Sliding-window accounting of requests and retries for one destination service.

    Time is cut into buckets of `window / buckets`. To stay on the safe side of
    bucket edges, requests are counted only from buckets wholly inside the
    window and retries from every bucket touching it, so for every admitted
    retry at time t: retries in (t - window, t] <= ratio * requests in
    (t - window, t] + min_per_second * window.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        window: float = 10.0,
        *,
        buckets: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (ratio >= 0 and min_per_second >= 0 and window > 0 and buckets >= 2):
            raise ValueError("retry budget needs ratio >= 0, min_per_second >= 0, window > 0")
        self.ratio = ratio
        self.reserve = min_per_second * window
        self.window = window
        self._width = window / buckets
        self._buckets = buckets
        self._clock = clock
        # [bucket index, requests, retries], oldest first
        self._counts: deque[list[int]] = deque()
        self.rejected = 0

    @classmethod
    def from_spec(
        cls, spec: RetryBudgetSpec, clock: Callable[[], float] = time.monotonic
    ) -> "RetryBudget":
        return cls(spec.ratio, spec.min_per_second, spec.window, clock=clock)

    def _current(self) -> tuple[int, list[int]]:
        index = int(self._clock() // self._width)
        while self._counts and self._counts[0][0] < index - self._buckets:
            self._counts.popleft()
        if not self._counts or self._counts[-1][0] != index:
            self._counts.append([index, 0, 0])
        return index, self._counts[-1]

    def record_request(self) -> None:
        """Count one original request (a deposit); retries are not deposits."""
        self._current()[1][1] += 1

    def try_retry(self) -> bool:
        """Admit one retry if the budget has room (and count it), else refuse it."""
        index, bucket = self._current()
        requests = sum(c[1] for c in self._counts if c[0] > index - self._buckets + 1)
        retries = sum(c[2] for c in self._counts)
        if retries + 1 > self.ratio * requests + self.reserve:
            self.rejected += 1
            return False
        bucket[2] += 1
        return True

    def usage(self) -> tuple[int, int]:
        """Requests and retries counted in the current window (for `/v1/stats`)."""
        index, _ = self._current()
        live = [c for c in self._counts if c[0] > index - self._buckets]
        return sum(c[1] for c in live), sum(c[2] for c in live)

    def __repr__(self) -> str:
        requests, retries = self.usage()
        return (
            f"<RetryBudget ratio={self.ratio} reserve={self.reserve:g} "
            f"requests={requests} retries={retries} rejected={self.rejected}>"
        )
