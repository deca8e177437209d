"""Instances the proxy has no latency sample of yet are equals for the balancer: whichever
discovery listed first, and however long before the other the proxy learned of it, the first
requests of a freshly started proxy go to either at random, not all to the first one."""

import random
from collections import Counter

import pytest

from proxy.balance import pick
from tests.unit.balance_helpers import Clock, Endpoint


@pytest.mark.parametrize("learned_apart_s", [0.0001, 5.0])  # one discovery answer; two
def test_picks_among_instances_without_a_sample_spread_over_both(learned_apart_s: float) -> None:
    clock = Clock()
    first = Endpoint("listed-first", clock)
    clock.now += learned_apart_s
    second = Endpoint("listed-second", clock)
    rng = random.Random(35)
    picked: Counter[str] = Counter()
    for _ in range(2000):
        clock.now += 0.001
        chosen = pick([first, second], rng)
        assert chosen is not None
        picked[chosen.name] += 1
    assert picked["listed-first"] >= 700 and picked["listed-second"] >= 700, picked


def test_an_instance_without_a_sample_is_spared_while_it_carries_more_load() -> None:
    clock = Clock()
    busy, idle = Endpoint("busy", clock), Endpoint("idle", clock)
    busy.ewma.pending = 3  # three connections of its own still open, none answered yet
    rng = random.Random(35)
    assert {pick([busy, idle], rng).name for _ in range(200)} == {"idle"}  # type: ignore[union-attr]
