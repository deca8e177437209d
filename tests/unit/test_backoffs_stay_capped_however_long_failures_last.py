"""Backoffs double up to their cap and stay there, however long the failures last: an instance
down for hours, or a Consul agent that never comes back, must not turn the next delay into an
OverflowError on the request path or in the watch loop."""

import asyncio
import random

from proxy.breaker import BreakerSettings, CircuitBreaker
from proxy.rewatch import WATCH_RETRY_MAX_S, watch_again_on_failure
from vm_mesh.backoff import doubled
from vm_mesh.discovery.consul import ConsulSettings, backoff_delay


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_delay_doubles_from_the_first_to_the_cap() -> None:
    assert [doubled(0.5, 3.0, n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert doubled(0.5, 3.0, 100_000) == 3.0


def test_a_breaker_keeps_probing_a_dead_instance_at_its_longest_backoff() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(consecutive_failures=1, min_s=1.0, max_s=60.0,
                                             jitter=0), clock, random.Random(1))
    for _ in range(2000):  # every probe fails
        clock.now = breaker.open_until
        assert breaker.available()
        breaker.on_request()
        breaker.on_failure()
    assert breaker.state == "open" and breaker.open_until - clock.now == 60.0


def test_a_consul_agent_that_stays_away_is_asked_again_at_the_longest_backoff() -> None:
    settings = ConsulSettings()
    delays = [backoff_delay(5000, settings) for _ in range(200)]
    assert all(0.0 <= delay <= settings.backoff_max_s for delay in delays)
    assert max(delays) > settings.backoff_max_s / 2  # the window is the whole cap


def test_a_watch_that_keeps_failing_is_started_again_at_the_longest_delay() -> None:
    delays: list[float] = []
    enough = asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= 1500:
            enough.set()
        await asyncio.sleep(0)

    def failing_watch():
        async def views():
            raise ConnectionError("agent gone")
            yield  # an async generator that fails at once

        return views()

    async def follow() -> None:
        views = watch_again_on_failure(failing_watch, "api", sleep=sleep)
        task = asyncio.ensure_future(anext(views))
        task.add_done_callback(lambda _: enough.set())
        await enough.wait()
        if task.done():
            task.result()  # how it failed
        task.cancel()

    asyncio.run(follow())
    assert all(0.0 <= delay <= WATCH_RETRY_MAX_S for delay in delays)
    assert max(delays[-200:]) > WATCH_RETRY_MAX_S / 2  # late delays draw from the whole cap
