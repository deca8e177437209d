"""The retry/timeout loop: retries what the route allows, within budget and deadline."""

import asyncio
import random

import pytest

from proxy.retry import CONNECT_FAILURE, RetryBudget, RetryPolicy
from proxy.retrying import (
    AttemptFailed,
    DeadlineExceeded,
    RetriesExhausted,
    send_with_retries,
)
from proxy.route import RequestFacts, RouteTable
from proxy.timeouts import PER_TRY_TIMEOUT, REQUEST_TIMEOUT, Deadline
from tests.unit.policy_helpers import policy


def route(rule: str):
    text = f"kind: HTTPRoute\nname: r\nservice: s\nrules:\n  - {rule}\n"
    return RouteTable("s", policy(text)).match(RequestFacts.build("GET", "/"))


class Backend:
    """Answers from a script: an int is a status, a str a failure, a float a stall."""

    def __init__(self, script: list[int | str | float]) -> None:
        self.script = list(script)
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, float):
            await asyncio.sleep(step)
            return 200
        if isinstance(step, str):
            raise AttemptFailed(step)
        return step


async def run(backend: Backend, rule: str, method: str = "GET", budget: RetryBudget | None = None):
    target = route(rule)
    retries_seen: list[object] = []
    result = await send_with_retries(
        backend,
        lambda status: status,
        method=method,
        body_size=0,
        deadline=Deadline(target.timeouts),
        retry=RetryPolicy(target.retry) if target.retry else None,
        budget=budget,
        rng=random.Random(1),
        on_retry=retries_seen.append,
    )
    return result, retries_seen


async def test_failures_are_retried_until_success() -> None:
    backend = Backend([503, CONNECT_FAILURE, 200])
    result, seen = await run(backend, "retry: {on: [5xx, connect-failure], attempts: 3, "
                             "backoff: {base: 1ms, max: 2ms}}")
    assert (result.response, result.retries, backend.calls) == (200, 2, 3)
    assert seen == [503, CONNECT_FAILURE]


async def test_without_retry_policy_the_first_answer_is_final() -> None:
    result, _ = await run(Backend([503]), "{}")
    assert (result.response, result.retries) == (503, 0)
    with pytest.raises(RetriesExhausted) as caught:
        await run(Backend([CONNECT_FAILURE]), "{}")
    assert caught.value.failure.outcome == CONNECT_FAILURE


async def test_post_is_not_retried() -> None:
    result, _ = await run(Backend([503]), "retry: {on: [5xx]}", method="POST")
    assert (result.response, result.retries) == (503, 0)


async def test_empty_budget_stops_retries() -> None:
    budget = RetryBudget(0.0, 0.0, 10.0)
    result, _ = await run(Backend([503, 503]), "retry: {on: [5xx]}", budget=budget)
    assert (result.response, result.retries, budget.rejected) == (503, 0, 1)


async def test_per_try_timeout_is_retried_then_succeeds() -> None:
    backend = Backend([5.0, 200])
    rule = (
        "{timeout: {per_try: 50ms}, "
        "retry: {on: [gateway-error], backoff: {base: 1ms, max: 1ms}}}"
    )
    result, seen = await run(backend, rule)
    assert (result.response, result.retries, seen) == (200, 1, [504])


async def test_request_timeout_ends_with_its_reason() -> None:
    with pytest.raises(DeadlineExceeded) as caught:
        await run(Backend([5.0]), "timeout: {request: 50ms}")
    assert caught.value.reason == REQUEST_TIMEOUT
    with pytest.raises(DeadlineExceeded) as caught:
        await run(Backend([5.0]), "timeout: {per_try: 50ms}")
    assert caught.value.reason == PER_TRY_TIMEOUT
