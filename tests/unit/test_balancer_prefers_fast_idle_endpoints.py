"""P2C over peak-EWMA: slow or busy endpoints get less traffic, unavailable ones none."""

import random
from collections import Counter

from proxy.balance import DEFAULT_RTT_MS, PeakEwma, pick
from tests.unit.balance_helpers import Clock, Endpoint


def test_a_slow_response_raises_the_cost_at_once() -> None:
    ewma = PeakEwma(Clock())
    ewma.observe(500.0)
    assert ewma.value == 500.0


def test_fast_responses_bring_a_peak_down_over_time() -> None:
    clock = Clock()
    ewma = PeakEwma(clock)
    ewma.observe(500.0)
    for _ in range(20):
        clock.now += 5.0
        ewma.observe(5.0)
    assert ewma.value < 10.0


def test_outstanding_requests_multiply_the_cost() -> None:
    ewma = PeakEwma(Clock())
    ewma.pending = 3
    assert ewma.cost == DEFAULT_RTT_MS * 4


def test_slow_endpoint_gets_a_small_share() -> None:
    clock = Clock()
    endpoints = [Endpoint(f"e{i}", clock) for i in range(3)]
    endpoints[0].ewma.observe(1000.0)
    for endpoint in endpoints[1:]:
        endpoint.ewma.observe(5.0)
    rng = random.Random(7)
    counts = Counter(pick(endpoints, rng).name for _ in range(3000))  # type: ignore[union-attr]
    # P2C only sends to the slow one when both draws hit it: never, with sample() of two.
    assert counts["e0"] == 0
    assert counts["e1"] > 1000 and counts["e2"] > 1000


def test_unavailable_endpoints_are_never_picked() -> None:
    clock = Clock()
    endpoints = [Endpoint("down", clock, up=False), Endpoint("up", clock)]
    rng = random.Random(1)
    assert {pick(endpoints, rng).name for _ in range(100)} == {"up"}  # type: ignore[union-attr]


def test_no_available_endpoint_gives_none() -> None:
    assert pick([Endpoint("down", Clock(), up=False)], random.Random(1)) is None


def _serve(endpoints: list[Endpoint], latency_ms: dict[str, float], clock: Clock,
           seconds: float, rng: random.Random) -> Counter[str]:
    """One request every 10 ms for `seconds`, each answered in its endpoint's latency."""
    picked: Counter[str] = Counter()
    for _ in range(int(seconds * 100)):
        clock.now += 0.01
        endpoint = pick(endpoints, rng)
        assert endpoint is not None
        endpoint.ewma.observe(latency_ms[endpoint.name])
        picked[endpoint.name] += 1
    return picked


def test_a_new_endpoint_gets_traffic_beside_fast_ones() -> None:
    clock = Clock()
    old, new = Endpoint("old", clock), Endpoint("new", clock)
    rng = random.Random(3)
    _serve([old], {"old": 5.0}, clock, 5, rng)
    new.ewma = PeakEwma(clock)  # joins now, at the default estimate
    latency = {"old": 5.0, "new": 5.0}
    _serve([old, new], latency, clock, 60, rng)  # its default estimate decays below 5 ms
    later = _serve([old, new], latency, clock, 30, rng)
    assert later["new"] > 0.3 * sum(later.values())


def test_an_endpoint_slow_once_is_tried_again() -> None:
    clock = Clock()
    endpoints = [Endpoint("a", clock), Endpoint("b", clock)]
    endpoints[0].ewma.observe(5.0)
    endpoints[1].ewma.observe(800.0)  # one slow answer, then it is as fast as the other
    rng = random.Random(5)
    first = _serve(endpoints, {"a": 5.0, "b": 5.0}, clock, 30, rng)
    assert first["b"] == 0  # while its peak is high, the fast one takes every request
    _serve(endpoints, {"a": 5.0, "b": 5.0}, clock, 60, rng)
    later = _serve(endpoints, {"a": 5.0, "b": 5.0}, clock, 30, rng)
    assert later["b"] > 0.3 * sum(later.values())


def test_concurrent_requests_spread_in_proportion_to_weight() -> None:
    clock = Clock()
    heavy, light = Endpoint("heavy", clock, weight=300), Endpoint("light", clock, weight=100)
    for endpoint in (heavy, light):
        endpoint.ewma.observe(5.0)
    rng = random.Random(11)
    for _ in range(40):  # 40 requests outstanding at once, none answered yet
        chosen = pick([heavy, light], rng)
        assert chosen is not None
        chosen.ewma.pending += 1
    assert (heavy.ewma.pending, light.ewma.pending) == (30, 10)


def test_a_drained_endpoint_serves_only_when_nothing_else_can() -> None:
    clock = Clock()
    drained, other = Endpoint("drained", clock, weight=0), Endpoint("other", clock)
    rng = random.Random(2)
    assert {pick([drained, other], rng).name for _ in range(200)} == {"other"}  # type: ignore[union-attr]
    other.up = False
    assert pick([drained, other], rng) is drained
