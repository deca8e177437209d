"""The retry and timeout layers as one loop around "send this request once".

The layer knows nothing about sockets: `attempt()` forwards the request once
(through split, balancer, endpoint) and returns the response once its head
has arrived, or raises `AttemptFailed` when no response came (connection
refused, reset). Per-try timeouts count as a 504 outcome (retried by `5xx`
and `gateway-error`); when the request timeout fires, `DeadlineExceeded`
carries the reason string for the 504 the proxy sends.
"""

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from proxy.retry import Outcome, RetryBudget, RetryPolicy
from proxy.timeouts import PER_TRY_TIMEOUT, REQUEST_TIMEOUT, Deadline, TaskTimer

R = TypeVar("R")

# A per-try timeout is seen by the retry policy as this status.
PER_TRY_TIMEOUT_STATUS = 504


class AttemptFailed(Exception):
    """One attempt got no response: `outcome` is `connect-failure` or `reset`."""

    def __init__(self, outcome: str, detail: str = "") -> None:
        super().__init__(detail or outcome)
        self.outcome = outcome


class DeadlineExceeded(Exception):
    """The request (or its last try) ran out of time; `reason` is a stable reason string."""

    def __init__(self, reason: str, retries: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retries = retries


class RetriesExhausted(Exception):
    """The last attempt failed without a response; carries its failure and the retry count."""

    def __init__(self, failure: AttemptFailed, retries: int) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.retries = retries


@dataclass(slots=True)
class Attempted(Generic[R]):
    """The response that ends the exchange and how many retries it took."""

    response: R
    retries: int


async def send_with_retries(
    attempt: Callable[[], Awaitable[R]],
    status_of: Callable[[R], int],
    *,
    method: str,
    body_size: int | None,
    deadline: Deadline,
    retry: RetryPolicy | None,
    budget: RetryBudget | None,
    rng: random.Random,
    discard: Callable[[R], Awaitable[None]] | None = None,
    on_retry: Callable[[Outcome], None] | None = None,
    timer: TaskTimer | None = None,
) -> Attempted[R]:
    """Send until a response is final, retrying as the route, the methods and the budget allow.

    `timer` is the calling task's (one per connection spares a timer per request); without
    one, the call makes its own."""
    if budget is not None:
        budget.record_request()
    retries = 0
    own_timer: TaskTimer | None = None
    try:
        while True:
            timeout, reason = deadline.next_try()
            if timeout is not None and timeout <= 0:
                raise DeadlineExceeded(REQUEST_TIMEOUT, retries)
            response: R | None = None
            failure: AttemptFailed | None = None
            try:
                if timeout is None:
                    response = await attempt()
                else:
                    if timer is None:
                        timer = own_timer = TaskTimer()
                    with timer.bound(timeout):  # unlike wait_for, no task per attempt
                        response = await attempt()
                outcome: Outcome = status_of(response)
            except TimeoutError:
                if reason == REQUEST_TIMEOUT:
                    raise DeadlineExceeded(REQUEST_TIMEOUT, retries) from None
                outcome = PER_TRY_TIMEOUT_STATUS
            except AttemptFailed as exc:
                failure = exc
                outcome = exc.outcome
            if retry is None or not _retry_now(retry, budget, retries, method, body_size, outcome):
                if response is not None:
                    return Attempted(response, retries)
                if failure is not None:
                    raise RetriesExhausted(failure, retries)
                raise DeadlineExceeded(PER_TRY_TIMEOUT, retries)
            if response is not None and discard is not None:
                await discard(response)
            if on_retry is not None:
                on_retry(outcome)
            pause = retry.backoff(retries, rng)
            remaining = deadline.remaining()
            if remaining is not None and pause >= remaining:
                raise DeadlineExceeded(REQUEST_TIMEOUT, retries)
            await asyncio.sleep(pause)
            retries += 1
    finally:
        if own_timer is not None:
            own_timer.close()


def _retry_now(
    retry: RetryPolicy,
    budget: RetryBudget | None,
    retries: int,
    method: str,
    body_size: int | None,
    outcome: Outcome,
) -> bool:
    if not retry.should_retry(retries, method, body_size, outcome):
        return False
    return budget is None or budget.try_retry()
