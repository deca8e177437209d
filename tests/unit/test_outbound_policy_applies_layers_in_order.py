"""The outbound layers together: route label, split per attempt, retries counted, mirrors."""

import asyncio
import random
from collections import Counter

import pytest

from proxy.events import RequestEvent
from proxy.outbound_policy import OutboundPolicy
from proxy.retrying import DeadlineExceeded
from proxy.route import RequestFacts
from proxy.shadow import FAILED, ShadowDispatcher
from proxy.traffic import TrafficPolicy
from tests.unit.policy_helpers import policy

POLICY = """\
kind: HTTPRoute
name: canary
service: api
rules:
  - matches: [{headers: {x-canary: "1"}}]
    backends: [{service: api-v2}]
  - backends: [{service: api-v1, weight: 1}, {service: api-v2, weight: 1}]
    retry: {on: [5xx], attempts: 3, backoff: {base: 1ms, max: 1ms}}
    timeout: {request: 100ms}
---
kind: Mirror
service: api
to: api-shadow
percent: 100
"""


def outbound() -> OutboundPolicy:
    traffic = TrafficPolicy(policy(POLICY), "vmesh.local", rng=random.Random(5))
    return OutboundPolicy(lambda: traffic, ShadowDispatcher(), random.Random(5))


async def test_retry_picks_a_backend_per_attempt_and_counts_retries() -> None:
    layers = outbound()
    calls: Counter[str] = Counter()

    async def shadow(name: str) -> None:
        raise ConnectionRefusedError(name)

    for _ in range(50):
        attempts: list[str] = []

        async def send(backend: str, attempts: list[str] = attempts) -> int:
            calls[backend] += 1
            attempts.append(backend)
            return 503 if backend == "api-v1" else 200

        event = RequestEvent(0, "1", "outbound", "127.0.0.1:1")
        status = await layers.forward("api", RequestFacts.build("GET", "/"), 0, event, send,
                                      lambda s: s, send_shadow=shadow)
        assert event.route == "canary/1" and event.dst_service == attempts[-1]
        assert event.retries == len(attempts) - 1
        assert status == (200 if attempts[-1] == "api-v2" else 503)
    assert calls["api-v1"] > 10 and calls["api-v2"] > 40  # both halves of the split were used
    await layers.shadows.drain()
    assert layers.shadows.counts[FAILED] == 50  # a dead shadow never showed in the answers


async def test_header_routes_to_the_canary_and_timeouts_surface() -> None:
    layers = outbound()
    event = RequestEvent(0, "1", "outbound", "127.0.0.1:1")
    facts = RequestFacts.build("GET", "/", "", [("X-Canary", "1")])

    async def ok(backend: str) -> int:
        return 200

    assert await layers.forward("api", facts, 0, event, ok, lambda s: s) == 200
    assert (event.dst_service, event.route) == ("api-v2", "canary/0")

    async def stall(backend: str) -> int:
        await asyncio.sleep(10)
        return 200

    event = RequestEvent(0, "2", "outbound", "127.0.0.1:1")
    with pytest.raises(DeadlineExceeded):
        await layers.forward("api", RequestFacts.build("GET", "/"), 0, event, stall, lambda s: s)
