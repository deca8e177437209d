"""One timer per task bounds each of its requests in turn, as asyncio.timeout would."""

import asyncio

import pytest

from proxy.timeouts import TaskTimer


async def test_a_bound_that_runs_out_raises_timeout() -> None:
    timer = TaskTimer()
    with pytest.raises(TimeoutError), timer.bound(0.01):
        await asyncio.sleep(10)
    timer.close()


async def test_bounds_one_after_the_other_each_get_their_own_time() -> None:
    timer = TaskTimer()
    for _ in range(3):  # quick requests under a long bound leave the timer armed
        with timer.bound(30):
            await asyncio.sleep(0)
    # a shorter bound is not held up by the long one
    with pytest.raises(TimeoutError), timer.bound(0.01):
        await asyncio.sleep(10)
    with timer.bound(0.05):
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # the timer fires with no bound in force: nothing is cancelled
    timer.close()


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def request() -> None:
        timer = TaskTimer()
        with timer.bound(30):
            await asyncio.sleep(10)

    task = asyncio.ensure_future(request())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
